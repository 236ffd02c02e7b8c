import { createElement as h, type ReactNode } from "react";

export default function RootLayout({ children }: { children: ReactNode }) {
  return h("html", { lang: "en" }, h("body", null, children));
}
