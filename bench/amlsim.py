"""Detection on IBM AMLSim ground truth (../shared/data/amlsim): `python -m bench.amlsim`.

Replays the labelled transactions through the streaming features and each policy and prints,
per typology, the account-level recall and the alert rate on accounts outside any alert. The
"artefact" variant adds rules that exploit a known property of the data (alert members have no
other activity: a dormant account's first transfer), to show how much of a score such a rule
alone would buy; it is not a policy to deploy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from screening.config import load_settings
from screening.offline.backtest import BacktestMetrics, backtest
from screening.offline.events import read_events
from screening.offline.mapping import load_mapping
from screening.offline.replay import replay
from screening.policy import Policy, load_policy, parse_policy

__all__ = ["DATA", "main"]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amlsim" / "transactions_labelled.csv.gz"
_SHIPPED = Path(__file__).resolve().parents[1] / "screening" / "policies" / "aml_streaming.toml"
_ARTEFACT_RULES = '''
[[rule]]
code = "DORMANT_PAYER_ACTIVE"
message = "First transfer of an account that existed for a month without any (data artefact)."
action = "WARN"
score = 50
report = ["suspicious"]
when = ["payer_history_count == 0", "payer_account_age_days >= 30"]

[[rule]]
code = "DORMANT_PAYEE_ACTIVE"
message = "First receipt of an account that existed for a month without any (data artefact)."
action = "WARN"
score = 50
report = ["suspicious"]
when = ["payee_history_count == 0", "payee_account_age_days >= 30"]
'''


def policies() -> dict[str, Policy]:
    shipped = _SHIPPED.read_text(encoding="utf-8")
    return {
        "default (fraud)": load_policy(),
        "aml-streaming": load_policy(_SHIPPED),
        "aml-streaming + artefact": parse_policy(shipped + _ARTEFACT_RULES, "artefact variant"),
    }


def run(data: Path) -> dict[str, BacktestMetrics]:
    events = read_events(data, load_mapping("amlsim"))
    settings = load_settings()
    return {name: backtest(events, replay(events, p, settings).decisions)
            for name, p in policies().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"no AMLSim data at {args.data}", file=sys.stderr)
        return 2
    results = run(args.data)
    typologies = sorted({s for m in results.values() for s in m.per_scenario.get_column("scenario")})
    print(f"{'account recall %':26}" + "".join(f"{t[:14]:>15}" for t in typologies)
          + f"{'ordinary alert %':>18}")
    for name, m in results.items():
        rec = {r["scenario"]: r["account_recall"] for r in m.per_scenario.to_dicts()}
        row = "".join(f"{100 * (rec.get(t) or 0):15.1f}" for t in typologies)
        print(f"{name:26}{row}{100 * m.overall['ordinary_account_alert_rate']:18.1f}")
    if args.json:
        args.json.write_text(json.dumps({k: m.as_dict() for k, m in results.items()}, indent=2,
                                        default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
