/**
 * `call`'s result, or a rejection once `ms` have passed without one (`what` names who did not
 * answer). For calls to other objects: an RPC has no deadline of its own.
 */
export async function answerWithin<T>(call: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const unanswered = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([call, unanswered]);
  } finally {
    clearTimeout(timer);
  }
}
