"""The bench's picture: a per-turn waterfall of the server's stages with the client's v2v on top, and
the distribution of v2v. matplotlib with the Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.events import STAGES

COLORS = {
    "endpoint": "#9e9e9e",
    "asr_final": "#1f77b4",
    "llm_first_token": "#ff7f0e",
    "first_clause": "#2ca02c",
    "tts_first_audio": "#9467bd",
    "audio_first_sent": "#8c564b",
}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = report["turns"]
    cond = report["conditions"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, max(4.0, 0.28 * len(rows) + 1.5)), width_ratios=(3, 2)
    )
    for y, r in enumerate(rows):
        timeline = r["timeline_ms"]
        previous = 0.0
        for stage in STAGES[1:]:
            if stage not in timeline or stage == "endpoint":
                continue
            end = timeline[stage]
            left.barh(y, end - previous, left=previous, color=COLORS[stage], height=0.7)
            previous = max(previous, end)
        if "endpoint" in timeline:
            left.plot([timeline["endpoint"]] * 2, [y - 0.4, y + 0.4], color="black", lw=1.5)
        if r["v2v_ms"] is not None:
            left.plot(r["v2v_ms"], y, "k|" if not r["premature"] else "rx", ms=12, mew=2)
    left.set_yticks(
        range(len(rows)),
        [f"{r['client']}.{r['turn']}" + (" p" if r["inner_pauses_s"] else "") for r in rows],
        fontsize=7,
    )
    left.invert_yaxis()
    left.set_xlabel(
        "ms after the user's last speech sample (server stages; | = v2v at the client; black bar = endpoint)"
    )
    handles = [Rectangle((0, 0), 1, 1, color=c) for s, c in COLORS.items() if s != "endpoint"]
    left.legend(handles, [s for s in COLORS if s != "endpoint"], fontsize=7, loc="lower right")
    left.set_title("per turn (client.turn; p = inner pause)", fontsize=9)

    v2v = sorted(r["v2v_ms"] for r in rows if r["v2v_ms"] is not None)
    right.hist(v2v, bins=min(30, max(5, len(v2v) // 2)), color="#1f77b4")
    s = report["summary"]["v2v_ms"]
    for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        if key in s:
            right.axvline(s[key], color="black", ls=style, label=f"{key} {s[key]:.0f} ms")
    right.set_xlabel("voice-to-voice latency at the client (ms)")
    right.legend(fontsize=8)
    right.set_title(
        f"{cond['transport']}, concurrency {cond['concurrency']}, {len(v2v)} turns, {cond['date'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
