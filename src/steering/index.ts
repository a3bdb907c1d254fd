// Steering: what people tell the bot on GitHub, turned into state on GitHub.
//
// - control.ts: pause, queued ideas and reviewer notes, kept in one control issue;
// - scan.ts: comments, read for commands and reviewer notes;
// - actions.ts: what rerun and keep do to an experiment;
// - clicks.ts: the check run's buttons;
// - answer.ts: questions about an experiment.
export * from "./control.js";
export * from "./scan.js";
export * from "./actions.js";
export * from "./clicks.js";
export * from "./answer.js";
