/** @type {import("next").NextConfig} */
export default {
  // The project type-checks with its own tsc.
  typescript: { ignoreBuildErrors: true },
};
