import type { Hono } from 'hono';
import type { Endpoint, Schema } from 'hono/types';

/**
 * hono/client makes a request's `query` and `header` arguments required as soon as a route
 * declares them, even when every member is optional, so `client.v1.agents.$get()` or an
 * execution without an Idempotency-Key would not compile. This loosens them, for AppType only:
 * a part whose members are all optional may be left out, as the API accepts its absence.
 */
type OptionalPart = 'query' | 'header';
type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];
type CanOmit<T> = [RequiredKeys<T>] extends [never] ? true : false;
type Loosen<I> = { [K in keyof I as K extends OptionalPart ? (CanOmit<I[K]> extends true ? never : K) : K]: I[K] } & {
  [K in keyof I as K extends OptionalPart ? (CanOmit<I[K]> extends true ? K : never) : never]?: I[K];
};
type LoosenEndpoint<E> = E extends Endpoint ? Omit<E, 'input'> & { input: Loosen<E['input']> } : never;
type ClientSchema<S extends Schema> = { [P in keyof S]: { [M in keyof S[P]]: LoosenEndpoint<S[P][M]> } };

/** The app's type with optional-only `query` and `header` parts made optional for hono/client. */
export type ClientApp<A> = A extends Hono<infer E, infer S extends Schema, infer B> ? Hono<E, ClientSchema<S>, B> : never;
