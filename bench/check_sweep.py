"""Does the sweep agree with the table? The check of ``fastmlp bench --sweep``.

For each backend, the sweep's point at the table's own size (N, H, dtype, precision) must have a
median epoch within the noise the bench reports of the table's median: within 15%, or within the
two measurements' spreads added (interquartile range over median), where the machine is noisier
than that. Exits with status 1 when a backend is outside it. Also prints, for every H of the sweep,
each backend's epoch/floor and its median over the baseline's (numpy), for reading the picture.

    python bench/check_sweep.py                  # runs: fastmlp bench --backends numpy,numba --sweep
    python bench/check_sweep.py --json r.json    # checks the result of an earlier --sweep --json run
    python bench/check_sweep.py --backends numpy,numba,torch --args "--epochs 20"
"""

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from fastmlp import cli  # imports no NumPy: the command sets its thread options first

#: agreement on a quiet machine; a noisier one gets the noise the bench itself measured
QUIET_TOLERANCE = 0.15
#: what the sweep of numba is held to, at every H
FLOOR_TARGET = 1.2


def run_sweep(backends, extra):
    """The result of ``fastmlp bench --backends B --sweep [extra]``, as the command wrote it."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        argv = ["bench", "--backends", backends, "--sweep", "--sweep-plot", str(Path(folder) / "sweep.png")]
        status = cli.main([*argv, *shlex.split(extra), "--json", str(out)])
        if status:
            sys.exit(status)
        return json.loads(out.read_text())


def same_size(config, point):
    keys = ("dtype", "precision", "n", "n_valid", "hidden")
    return all(config[key] == point[key] for key in keys)


def agreement(result):
    """[(line, agrees)] per backend: the table's median against the sweep's point at that size."""
    lines = []
    for config in result["configs"]:
        point = next((p for p in result["sweep"]["points"] if same_size(config, p)), None)
        if point is None:
            continue  # a table size the sweep does not visit (a second --hidden)
        for name, table in config["backends"].items():
            swept = point["backends"].get(name)
            if swept is None:
                continue
            difference = abs(swept["median_s"] - table["median_s"]) / table["median_s"]
            tolerance = max(QUIET_TOLERANCE, (table["spread"] or 0) + (swept["spread"] or 0))
            agrees = difference <= tolerance
            lines.append(
                (
                    f"{config['dtype']}/{config['precision']} N={config['n']} H={config['hidden']} {name:<14} "
                    f"table {table['median_s']:.4f} s ({table['floor_ratio']:.3f}x floor), "
                    f"sweep {swept['median_s']:.4f} s ({swept['floor_ratio']:.3f}x floor): differ by "
                    f"{100 * difference:.1f}%, {'within' if agrees else 'NOT within'} {100 * tolerance:.0f}%",
                    agrees,
                )
            )
    return lines


def h_report(result, baseline="numpy"):
    """Per point of the H sweep: each backend's epoch/floor and its median over the baseline's."""
    sweep = result["sweep"]
    for point in sorted(sweep["points"], key=lambda p: (p["dtype"], p["precision"], p["hidden"])):
        if point["n"] != sweep["n"]:
            continue
        base = point["backends"].get(baseline)
        parts = []
        for name, entry in point["backends"].items():
            versus = f", {entry['median_s'] / base['median_s']:.2f}x {baseline}" if base and name != baseline else ""
            mark = "" if entry["floor_ratio"] <= FLOOR_TARGET else f" (over {FLOOR_TARGET})"
            parts.append(f"{name} {entry['floor_ratio']:.3f}x floor{mark}{versus}")
        yield f"H={point['hidden']:<5} {point['dtype']}/{point['precision']}: " + "; ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="a result of fastmlp bench --sweep --json (else the sweep is run)")
    parser.add_argument("--backends", default="numpy,numba")
    parser.add_argument("--args", default="", help="more fastmlp bench options, quoted")
    args = parser.parse_args()
    result = json.loads(Path(args.json).read_text()) if args.json else run_sweep(args.backends, args.args)
    if "sweep" not in result:
        sys.exit(f"{args.json} holds no sweep: run fastmlp bench --sweep --json FILE")
    machine = result["machine"]
    load = result.get("load_average")
    print(f"\n{machine['cpu']} ({machine['cpu_count']} cores), {result['blas']['blas']}, {result['date']}", end="")
    print(f", load average {load[0]:.1f} at the start" if load else "")
    print("the sweep's point at the table's size against the table:")
    checked = agreement(result)
    for line, _ in checked:
        print("  " + line)
    print("every H of the sweep:")
    for line in h_report(result):
        print("  " + line)
    return 0 if checked and all(agrees for _, agrees in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
