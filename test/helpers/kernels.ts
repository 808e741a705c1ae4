// Kernel availability for tests that need real kernels: while an op's CPU kernel is still the scaffold
// it throws "<op>: not implemented yet"; such tests skip with that reason instead of failing, and run
// for real as soon as the kernel lands. Any other error fails the test.
export function missingKernel(err: unknown): string | undefined {
  const m = /(\w+): not implemented yet/.exec(err instanceof Error ? err.message : String(err));
  return m?.[1];
}

/** Run fn; skip the test (with the op's name) when a kernel is not implemented yet. */
export async function withKernels(ctx: { skip: (note?: string) => never }, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const op = missingKernel(err);
    if (op) ctx.skip(`kernel '${op}' is not implemented yet in this build`);
    throw err;
  }
}
