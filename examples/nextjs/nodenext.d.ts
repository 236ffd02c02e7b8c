// For this repository's type check only, which resolves modules as Node does (NodeNext): Next's
// subpaths have no `exports` map, so Node needs their file names. A Next.js app resolves them
// as a bundler does and needs none of this.
declare module "next/headers" {
  export * from "next/headers.js";
}
declare module "next/navigation" {
  export * from "next/navigation.js";
}
