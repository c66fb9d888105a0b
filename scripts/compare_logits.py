"""Teacher-forced agreement of two `score --json`-shaped logit files (ours against llama.cpp's).

    python3 scripts/compare_logits.py OURS.json LLAMACPP.json [--margin 0.3] [--tol 1.0]

At every position where llama.cpp's best two logits differ by at least MARGIN: our argmax must
equal llama.cpp's, and each of llama.cpp's top-10 tokens must be in our candidate list with a
logit within TOL of llama.cpp's. Prints one summary line; exit status 1 on any failure.
"""
import argparse
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("theirs")
    ap.add_argument("--margin", type=float, default=0.3)
    ap.add_argument("--tol", type=float, default=1.0)
    a = ap.parse_args()
    ours = json.load(open(a.ours))["positions"]
    theirs = json.load(open(a.theirs))["positions"]
    if len(ours) != len(theirs):
        print(f"FAIL: {len(ours)} positions against {len(theirs)}")
        return 1
    checked = failures = 0
    worst = 0.0
    for i, (o, t) in enumerate(zip(ours, theirs)):
        if len(t) < 2 or t[0][1] - t[1][1] < a.margin:
            continue
        checked += 1
        ol = {tok: logit for tok, logit in o}
        bad = o[0][0] != t[0][0]
        for tok, logit in t[:10]:
            if tok not in ol:
                bad = True
                continue
            worst = max(worst, abs(ol[tok] - logit))
            bad |= abs(ol[tok] - logit) > a.tol
        if bad:
            failures += 1
            print(f"position {i}: ours {o[:3]} llama.cpp {t[:3]}", file=sys.stderr)
    verdict = "PASS" if failures == 0 and checked > 0 else "FAIL"
    print(f"{verdict}: {checked} positions checked of {len(theirs)}, {failures} failed, "
          f"largest top-10 difference {worst:.3f}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
