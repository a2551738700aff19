"""The HTML report of an RL run: what the agent did on the held-out period, against flat and
buy-and-hold at the same costs, and how its training went.

Built from the JSON-ready records a run keeps (``evaluate_policy(...).summary()``, the
training evaluations, the curriculum history, the replay's statistics), so a report can be
rebuilt from a run folder alone. Pure: returns the HTML text; the caller writes it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moola.evaluation.report import Section, image_html, pre_html, render_report, table_html

#: The policies an evaluation compares, in report order, with the names a reader sees.
POLICIES: tuple[tuple[str, str], ...] = (
    ("policy", "agent"),
    ("flat", "flat"),
    ("buy_and_hold", "buy and hold"),
)


def _equity_png(curves: Mapping[str, Sequence[float]]) -> bytes:
    """Equity per episode bar of each policy's first episode, one line each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), np.asarray(values, dtype=float), label=name, lw=1.2)
    ax.set_xlabel("episode bar")
    ax.set_ylabel("equity")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _learning_png(evaluations: Sequence[Mapping[str, Any]]) -> bytes:
    """Evaluation reward against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [e["step"] for e in evaluations if e.get("reward") is not None]
    rewards = [e["reward"] for e in evaluations if e.get("reward") is not None]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot(steps, rewards, marker="o", lw=1.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("evaluation reward")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _comparison(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, name in POLICIES:
        result = evaluation.get(key)
        if result:
            rows.append(
                {
                    "policy": name,
                    "mean return": result["mean_return"],
                    "mean reward": result["mean_reward"],
                    "final equity": result["mean_final_equity"],
                    "invalid actions": result["invalid_actions"],
                }
            )
    return rows


def _components(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = sorted(
        {c for key, _ in POLICIES for c in (evaluation.get(key) or {}).get("reward_components", {})}
    )
    return [
        {
            "component": c,
            **{
                name: (evaluation.get(key) or {}).get("reward_components", {}).get(c, "-")
                for key, name in POLICIES
                if evaluation.get(key)
            },
        }
        for c in names
    ]


def _later(record: Mapping[str, Any]) -> list[Section]:
    """An evaluation made after the run (``moola rl eval``): its comparison and replay."""
    period = record.get("period", {})
    note = (
        f"{period.get('first', '')} to {period.get('last', '')} ({period.get('bars', '')} bars)."
        + (" Looked at once and recorded in the journal." if record.get("part") == "test" else "")
        + (
            " This split's test part had been looked at before."
            if record.get("reused_test")
            else ""
        )
    )
    backtest = record.get("backtest") or {}
    rows = [{"measure": k, "value": v} for k, v in backtest.items()]
    return [
        Section(
            f"{str(record.get('part', '')).capitalize()} period, played {record.get('at', '')}",
            table_html(_comparison(record)) + table_html(rows),
            note=note,
        )
    ]


def rl_report(
    run_id: str,
    manifest: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    later: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The report of RL run ``run_id`` from its manifest, its evaluation record and the
    evaluations made after it (``later``, e.g. the one look at the test period)."""
    period = evaluation.get("period", {})
    sections = [
        Section(
            "Evaluation on the held-out period",
            table_html(_comparison(evaluation)),
            note=(
                f"{period.get('part', '')} period {period.get('first', '')} to "
                f"{period.get('last', '')} ({period.get('bars', '')} bars); every policy "
                "played the same episodes through the same environment and costs. Returns "
                "are after all costs."
            ),
        )
    ]
    curves = {
        name: evaluation[key]["episodes"][0]["equity"]
        for key, name in POLICIES
        if evaluation.get(key) and evaluation[key].get("episodes")
    }
    if curves:
        sections.append(Section("Equity", image_html(_equity_png(curves), "equity curves")))
    sections.append(
        Section(
            "Reward components",
            table_html(_components(evaluation)),
            note="Each component's sum over an episode (mean over episodes).",
        )
    )
    actions = (evaluation.get("policy") or {}).get("actions", {})
    sections.append(
        Section(
            "Actions taken",
            table_html([{"action": k, "count": v} for k, v in sorted(actions.items())]),
        )
    )
    backtest = evaluation.get("backtest") or {}
    sections.append(
        Section(
            "Replayed through moola backtest",
            table_html(
                [
                    *({"measure": k, "value": v} for k, v in backtest.items()),
                    {
                        "measure": "largest equity difference (relative) env vs backtest",
                        "value": evaluation.get("parity_max_rel_diff"),
                    },
                ]
            ),
            note="The agent's greedy episode, its executed targets replayed through the "
            "event engine with the same execution terms.",
        )
    )
    training = manifest.get("training", {})
    evaluations = training.get("evaluations") or []
    body = table_html(evaluations)
    if any(e.get("reward") is not None for e in evaluations):
        body = image_html(_learning_png(evaluations), "evaluation reward") + body
    sections.append(Section("Training", body, note=f"{training.get('timesteps')} steps."))
    sections.append(Section("Models kept", table_html(training.get("kept") or [])))
    if training.get("curriculum"):
        sections.append(Section("Curriculum", table_html(training["curriculum"])))
    for record in later:
        sections.extend(_later(record))
    sections.append(
        Section(
            "Configuration",
            pre_html(json.dumps(manifest.get("config", {}), indent=2, default=str)),
            collapsed=True,
        )
    )
    data = manifest.get("data", {})
    dataset = data.get("dataset", {})
    subtitle = (
        f"{manifest.get('config', {}).get('algo', '')} on {dataset.get('name', '')}@v"
        f"{dataset.get('version', '')}, symbol {data.get('symbol', '')}"
    )
    return render_report(f"RL run {run_id}", sections, subtitle=subtitle)


__all__ = ["POLICIES", "rl_report"]
