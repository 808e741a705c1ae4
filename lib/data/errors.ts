// Errors of the data pipeline.
//
// DataError: a problem with what the user pointed us at (spec string, folder layout, IDX header), found
// before training starts; the message names the path, what was expected and what was found.
// SampleReadError: one sample could not be read or decoded; the loader replaces the sample and reports
// the path once, it never stops training for it.

export class DataError extends Error {
  override name = 'DataError';
  constructor(
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

export class SampleReadError extends Error {
  override name = 'SampleReadError';
  constructor(
    message: string,
    readonly where: string,
  ) {
    super(message);
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
