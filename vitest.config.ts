import { defineConfig } from "vitest/config";

// Three projects. `unit` tests the product (src/, the harness, the scripts), end to end included;
// `twins` tests only the test doubles of GitHub, Kubernetes and OpenAI (test/twins/), so that a
// count of product tests is not inflated by them; `npm test` runs both (no PyTorch needed).
// `trainer` really trains the template on CPU and needs python3-torch.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/trainer-suite/**", "test/twins/**", "node_modules/**"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: "twins",
          include: ["test/twins/**/*.test.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: "trainer",
          include: ["test/trainer-suite/**/*.test.ts"],
          testTimeout: 900_000,
          hookTimeout: 900_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
