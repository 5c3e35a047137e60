// How numbers, times and stop reasons are written on the page. Pure functions: no DOM, no API.

const GROUPED = new Intl.NumberFormat("en-US");

// 1005 -> "1,005" (BigInt too: seeds and attempt budgets can pass 2^53).
export function count(n) {
  return n === null || n === undefined ? "—" : GROUPED.format(n);
}

export function percent(share, digits = 1) {
  return share === null || share === undefined ? "—" : `${(100 * share).toFixed(digits)} %`;
}

export function rate(perSecond) {
  if (perSecond === null || perSecond === undefined || !Number.isFinite(perSecond)) return "—";
  return `${GROUPED.format(Math.round(perSecond))} samples/s`;
}

export function bytes(n) {
  if (n === null || n === undefined) return null;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// Seconds as "42 s", "3 min 05 s", "2 h 04 min".
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const pad = (x) => String(x).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}

// An ISO 8601 UTC time from the API as local "2025-11-25 12:51:08" (the title keeps the ISO).
export function when(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const pad = (x) => String(x).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} `
    + `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

// The rejection reasons of the kernel (kernel/layout.py REJECT_REASONS), in words.
export const REJECTION_WORDS = {
  tx_off: "transmitter off (duty cycle)",
  min_receivers: "too few receivers detect it (min_receivers)",
  min_snr: "SNR below min_snr_db",
  gdop: "geometry worse than max_gdop",
  crb: "Cramér-Rao bound above max_crb_m",
};

// A finished job's stop reason in words: the headline; the job's own stop_message (counts and
// the advice contract C1 requires) and error are shown under it as the API wrote them.
export function stopHeadline(job) {
  switch (job.stopped_reason) {
    case "target_reached": return "Completed: target reached";
    case "cancelled": return "Cancelled by request";
    case "interrupted": return "Interrupted: its process ended before it finished";
    case "max_attempts": return "Stopped short: the attempt budget (max_attempts) ran out";
    case "stalled": return "Stopped short: stalled, too many rejected attempts in a row";
    case "failed": return "Failed: an error stopped it";
    default:
      return job.stopped_reason ? `Stopped: ${job.stopped_reason}` : `Ended: ${job.status}`;
  }
}

export const ACTIVE = ["pending", "queued", "running"];
export const RESUMABLE = ["interrupted", "cancelled", "failed"];

export const STATUS_WORDS = {
  pending: "waiting for a worker",
  queued: "queued behind another job on this dataset",
  running: "running",
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled",
  interrupted: "interrupted",
};
