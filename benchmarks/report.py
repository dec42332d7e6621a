"""Renders benchmarks/results.json as the Markdown table the README quotes (`python -m benchmarks.report`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.targets import TARGETS


def _number(value: float, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("entries/s", "req/s", "events/s"):
        return f"{value:,.0f} {unit}"
    if unit == "×":
        return f"{value:.2f}×" if value < 1 else f"{value:.1f}×"
    if unit in ("ms", "µs", "s"):
        return f"{value:,.2f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.1f} {unit}"


def _size(key: str) -> str:
    _, _, size = key.partition("@")
    return f" at {int(size):,}" if size.isdigit() else ""


def _host_speed(speed: dict | None) -> list[str]:
    """The host's speed at the start and end of the run (conftest.host_speed), to scale figures of other runs by."""
    if not speed:
        return []
    start, end = speed["start"], speed["end"]
    line = (f"Host speed (best of five, lower is faster), start / end of the run: Ed25519 verification "
            f"{start['ed25519_verify_us']} / {end['ed25519_verify_us']} µs, SHA-256 of 64 bytes "
            f"{start['sha256_64_bytes_ns']} / {end['sha256_64_bytes_ns']} ns")
    if "fdatasync_4k_us" in start:
        line += f", a 4 KiB write and fdatasync {start['fdatasync_4k_us']} / {end['fdatasync_4k_us']} µs"
    return [line + ".", ""]


def render_markdown(data: dict) -> str:
    lines = ["# auditlog performance", "",
             "Written by `pytest benchmarks` (short mode, the CI default) and `pytest benchmarks --bench-full`.",
             "Targets are for 2 cores and are reported, never asserted; each benchmark asserts only that the work",
             "it timed was correct. Raw figures with their parameters: `results.json`; what bounds each missed",
             "target: `PROFILES.md`.", ""]
    for mode in ("full", "short"):
        section = data.get("modes", {}).get(mode)
        if not section:
            continue
        m = section["machine"]
        lines += [
            f"## {mode} mode", "",
            f"{m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gb']} GB; "
            f"{m['os']}; Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL {m['postgresql']}; "
            f"{m['date']}, commit `{m['git_commit'][:12]}`"
            + (" (with uncommitted changes in log/api/witness)" if m.get("git_worktree_dirty") else ""), "",
            *_host_speed(m.get("host_speed")),
            "| figure | measured | target | met |", "| --- | --- | --- | --- |",
        ]
        notes = []
        for key, fig in section["figures"].items():
            figure = TARGETS.figure(key)
            title = (figure.title if figure else key) + _size(key)
            if "@" not in key and isinstance(fig["details"].get("entries"), int):
                title += f" ({fig['details']['entries']:,} entries)"
            if fig["status"] == "pending":
                measured = "**pending**: " + fig["details"].get("reason", "not landed")
            else:
                measured = _number(fig["value"], fig["unit"])
            when = fig.get("measured_at") or {}
            if when.get("git_commit") and not str(m.get("git_commit")).startswith(when["git_commit"][:12]):
                # a `-k` run refreshed this figure alone: say when and at which commit
                measured += f" ({when['date'][:16]}, `{when['git_commit'][:12]}`)"
            met = {True: "yes", False: "**no**", None: ""}[fig.get("meets_target")]
            lines.append(f"| {title} | {measured} | {fig.get('target', '')} | {met} |")
            note = fig["details"].get("note")
            if note:
                notes.append(f"- {title}: {note}")
        lines.append("")
        if notes:
            lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("results.json")
    sys.stdout.write(render_markdown(json.loads(path.read_text())))
