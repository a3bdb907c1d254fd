// The one logger shape every part of the bot writes to (Probot's pino logger fits it, and so does
// `console`). Parts that only warn take the same type and call what they need.
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** Says nothing: the default where no logger is given (tests, scripts). */
export const quietLog: Logger = { info() {}, warn() {}, error() {} };

/** The clock, injected once where a caller (a test) needs to set the time. */
export type Clock = () => Date;
export const systemClock: Clock = () => new Date();
