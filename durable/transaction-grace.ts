/**
 * How long after the deadline an undecided log is taken for a crashed coordinator. Its own
 * module: the agent's lock resolve names it too, and should not load the coordinator class.
 */
export const DECISION_GRACE_MS = 1_000;
