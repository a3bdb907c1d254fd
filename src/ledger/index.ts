// The ledger is the set of experiment PRs. Each PR body has a human part and, at the end, the
// machine-readable ExperimentRecord in a hidden block: the state the reconcile loop reads back.
export * from "./schema.js";
export * from "./record.js";
export * from "./body.js";
export * from "./branches.js";
export * from "./labels.js";
export * from "./results-tsv.js";
export * from "./tree-hash.js";
export * from "./write.js";
