// A duration as a person says it, for end-of-run lines and reports: "0.8 s", "45 s", "2 min 22 s",
// "1 h 02 min". (The progress bar's ETA keeps clock form, lib/cli/progress.ts.)
export function spellDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return 'unknown time';
  if (sec < 9.95) return `${sec.toFixed(1)} s`; // (9.95 would print as 10.0)
  const s = Math.round(sec);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}
