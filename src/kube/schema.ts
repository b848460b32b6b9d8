/**
 * A tiny typed builder of OpenAPI v3 schemas, the one source of the CRDs (src/kube/crds.ts):
 * each builder returns the schema object itself, exactly as it goes into the CRD's
 * openAPIV3Schema, and carries the TypeScript type of the values it admits, read back with
 * `Infer<typeof schema>`. So the YAML the apiserver validates and the types the code is checked
 * against cannot disagree (controller-gen does the same from Go types in Go projects).
 * Only the keywords the CRDs use; properties are optional unless named in `required`.
 */

/** Phantom key: never present at run time, only a carrier of the admitted type. */
declare const admits: unique symbol;

export interface Schema<T> {
  readonly [admits]?: T;
  readonly type: 'string' | 'integer' | 'boolean' | 'array' | 'object';
  readonly description?: string;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

/** An x-kubernetes-validations entry: a CEL rule and the message the apiserver refuses with. */
export interface Rule { readonly rule: string; readonly message: string }

interface Described { description?: string }
interface StringOpts extends Described { minLength?: number; maxLength?: number; format?: 'date-time' }
interface IntegerOpts extends Described { minimum?: number; maximum?: number }
interface ArrayOpts extends Described { minItems?: number; maxItems?: number }
interface ObjectOpts<R> extends Described {
  required?: R;
  'x-kubernetes-validations'?: readonly Rule[];
}

type Props = Record<string, Schema<unknown>>;
type Flatten<T> = { [K in keyof T]: T[K] };
type ObjectOf<P extends Props, R extends keyof P> = Flatten<
  { [K in R]: Infer<P[K]> } & { [K in Exclude<keyof P, R>]?: Infer<P[K]> }
>;

/**
 * A string; `T` narrows the type where the code writes only some values the schema does not
 * list (the apiserver admits any string there, the type keeps the code to the known ones).
 */
function string<T extends string = string>(opts: StringOpts = {}): Schema<T> {
  return { type: 'string', ...opts };
}

function enumOf<const V extends readonly string[]>(values: V, opts: Described = {}): Schema<V[number]> & { enum: V } {
  return { type: 'string', enum: values, ...opts };
}

function integer(opts: IntegerOpts = {}): Schema<number> {
  return { type: 'integer', ...opts };
}

/** Sizes, transaction ids, generations: JSON numbers the apiserver keeps as 64-bit integers. */
function int64(opts: IntegerOpts = {}): Schema<number> {
  return { type: 'integer', format: 'int64', ...opts } as Schema<number>;
}

function boolean(opts: Described = {}): Schema<boolean> {
  return { type: 'boolean', ...opts };
}

function array<S extends Schema<unknown>>(items: S, opts: ArrayOpts = {}): Schema<Array<Infer<S>>> {
  return { type: 'array', items, ...opts } as Schema<Array<Infer<S>>>;
}

/** An object; without properties it is `{ type: object }` alone (metadata, which the apiserver knows). */
function object<const P extends Props, const R extends ReadonlyArray<keyof P & string> = []>(
  properties: P, opts: ObjectOpts<R> = {},
): Schema<ObjectOf<P, R[number]>> {
  const { required, ...rest } = opts;
  return {
    type: 'object',
    ...(required && required.length > 0 ? { required } : {}),
    ...rest,
    ...(Object.keys(properties).length > 0 ? { properties } : {}),
  } as Schema<ObjectOf<P, R[number]>>;
}

/**
 * The same schema, typed stricter than it validates (a field the code always writes, which the
 * schema leaves optional for objects written by others): `T` must be assignable to what the
 * schema admits, so the narrowing can never admit more than the apiserver does.
 */
function narrow<T>() {
  return <S extends Schema<unknown>>(schema: S & ([T] extends [Infer<S>] ? unknown : { narrowerThanSchema: never })): Schema<T> =>
    schema as Schema<T>;
}

export const s = { string, enum: enumOf, integer, int64, boolean, array, object, narrow };
