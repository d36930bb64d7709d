#!/usr/bin/env python
"""Plot the teacher-forcing ratio over training steps for each schedule of
``seq2seq/training/schedules.py`` (docs/learn/teacher_forcing.md)::

    python docs/learn/teacher_forcing_schedules.py --out runs/learn/teacher_forcing_schedules.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seq2seq.training.schedules import SCHEDULES, TeacherForcingSchedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/learn/teacher_forcing_schedules.png")
    parser.add_argument("--start", type=float, default=1.0)
    parser.add_argument("--end", type=float, default=0.1)
    parser.add_argument("--decay-steps", type=int, default=10000)
    parser.add_argument("--smoke", action="store_true", help="accepted for the docs test; no effect")
    args = parser.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = range(0, int(args.decay_steps * 1.5) + 1, max(args.decay_steps // 200, 1))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    print("step      " + "  ".join(f"{kind:>15}" for kind in SCHEDULES))
    rows = {kind: TeacherForcingSchedule(kind, args.start if kind != "constant" else 1.0, args.end,
                                         args.decay_steps) for kind in SCHEDULES}
    for kind, schedule in rows.items():
        ax.plot(list(steps), [schedule.ratio(s) for s in steps], label=kind)
    for step in (0, args.decay_steps // 4, args.decay_steps // 2, args.decay_steps):
        print(f"{step:<8}  " + "  ".join(f"{rows[k].ratio(step):15.3f}" for k in SCHEDULES))
    ax.axvline(args.decay_steps, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel(f"training step (decay_steps = {args.decay_steps})")
    ax.set_ylabel("teacher-forcing ratio")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
