import { defineConfig } from "vitest/config";

// Two suites: `unit` is the fast default (`npm test`, no PyTorch needed);
// `trainer` really trains the template on CPU and needs python3-torch.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/trainer-suite/**", "node_modules/**"],
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
