"""A MOS study with several raters on a real Label Studio.

Annotator accounts join through the organization's invite link (as README "Several raters" tells a
study lead to add them), each works through their own label stream over the API, as the labelling
page does. The export's MOS, intervals, votes file, rater report and screening are checked against
a computation by hand from the scores the raters gave.
"""
from __future__ import annotations

import csv
import random
import re
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from scipy import stats

from tests.helpers import Stack

pytestmark = pytest.mark.e2e

PASSWORD = "rate-carefully-2026"
GOLD = {"img1.png": (60.0, 100.0), "img9.png": (0.0, 40.0)}  # scene 1's reference and strongest blur


def level_of(stack: Stack) -> dict[str, int]:
    with open(stack.root / "manifest.csv") as handle:
        return {row["image"]: int(row["level"]) for row in csv.DictReader(handle)}


def join(stack: Stack, email: str) -> requests.Session:
    """Sign up through the invite link, then use the account's own token (Authorization: Token)."""
    invite = stack.api("GET", "/api/invite").json()["invite_url"]
    browser = requests.Session()
    page = browser.get(f"{stack.ls_url}{invite}", timeout=60)
    assert page.status_code == 200, page.text[:300]
    signup = browser.post(page.url, timeout=60, headers={"Referer": page.url}, data={
        "csrfmiddlewaretoken": browser.cookies["csrftoken"], "email": email, "password": PASSWORD})
    assert signup.status_code == 200 and "/user/signup" not in signup.url, signup.text[:500]
    token = browser.get(f"{stack.ls_url}/api/current-user/token", timeout=60).json()["token"]
    rater = requests.Session()
    rater.headers["Authorization"] = f"Token {token}"
    return rater


def rate_stream(stack: Stack, rater: requests.Session, project_id: int,
                score: Callable[[str], float | None], lead_time: float) -> dict[str, float | None]:
    """Take tasks from this rater's label stream until it is empty; None skips the image."""
    given: dict[str, float | None] = {}
    for _ in range(100):
        response = rater.get(f"{stack.ls_url}/api/projects/{project_id}/next", timeout=60)
        if response.status_code == 404:
            return given
        assert response.status_code == 200, response.text[:300]
        task = response.json()
        name = task["data"]["image_name"]
        assert name not in given, f"the stream handed out {name} twice to one rater"
        value = score(name)
        body = ({"result": [], "was_cancelled": True} if value is None else
                {"result": [{"from_name": "mos", "to_name": "image", "type": "number",
                             "value": {"number": value}}], "was_cancelled": False})
        posted = rater.post(f"{stack.ls_url}/api/tasks/{task['id']}/annotations", timeout=60,
                            json={**body, "lead_time": lead_time})
        assert posted.status_code == 201, posted.text[:300]
        given[name] = value
    raise AssertionError("the label stream did not run out")


def careful(levels: dict[str, int], email: str, bias: int) -> Callable[[str], float]:
    """About what the distortion level says, the rater's own offset, a few points of noise."""
    def score(name: str) -> float:
        noise = random.Random(f"{email}/{name}").randint(-4, 4)
        return max(0, min(100, 90 - 18 * levels[name] + bias + noise))

    return score


def careless(email: str) -> Callable[[str], float]:
    """Any score at all, whatever the image."""
    return lambda name: random.Random(f"{email}/{name}").randint(0, 100)


def study_folder(stack: Stack, name: str, images: list[str]) -> Path:
    folder = stack.document_root / name
    folder.mkdir()
    for image in images:
        shutil.copy(stack.images / image, folder / image)
    return folder


def seed(stack: Stack, folder: Path, *extra: str) -> int:
    result = stack.run("seed", str(folder), "--url", stack.ls_url, "--api-key", stack.token, "--document-root",
                       str(stack.document_root), "--no-progress", "--title", f"Study {folder.name}", *extra)
    assert result.returncode == 0, result.stderr
    return int(re.search(r"\(id (\d+),", result.stdout).group(1))


def export(stack: Stack, project_id: int, *extra: str) -> str:
    result = stack.run("export", "--project-id", str(project_id), "--no-refresh", "--url", stack.ls_url,
                       "--api-key", stack.token, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_three_raters_votes_intervals_gold_and_the_rater_report(stack: Stack) -> None:
    levels = level_of(stack)
    names = [f"img{i}.{'jpg' if 2 <= i <= 5 else 'png'}" for i in range(1, 14)]  # scene 1's ladder
    folder = study_folder(stack, "study3", names)
    gold = stack.root / "gold3.csv"
    gold.write_text("image,min,max\n" + "".join(f"{n},{lo:g},{hi:g}\n" for n, (lo, hi) in GOLD.items()))
    project_id = seed(stack, folder, "--raters", "3", "--gold", str(gold), "-n", "3")

    raters = {"ann1@example.com": careful(levels, "ann1@example.com", +3),
              "ann2@example.com": careful(levels, "ann2@example.com", -3),
              "ann3@example.net": careless("ann3@example.net")}
    assert not all(lo <= raters["ann3@example.net"](n) <= hi for n, (lo, hi) in GOLD.items())
    skip = "img5.jpg"  # ann2 skips one image
    given = {}
    for email, score in raters.items():
        session = join(stack, email)
        rule = (lambda s: lambda n: None if n == skip else s(n))(score) if email == "ann2@example.com" else score
        given[email] = rate_stream(stack, session, project_id, rule, 0.9 if email == "ann3@example.net" else 6.5)
        assert sorted(given[email]) == sorted(names), email  # each rater's own stream: every image once

    # The labelling view shows no gold field: the config never refers to it; the data is there.
    config = stack.client().get_label_config(project_id)
    assert "gold" not in config
    tasks = {t.data["image_name"]: t for t in stack.client().tasks(project_id)}
    assert {n: (t.data["gold_min"], t.data["gold_max"]) for n, t in tasks.items() if "gold_min" in t.data} == GOLD

    # No screening: N, Std and the Student-t interval by hand, from the scores given.
    out, votes = stack.root / "study3.csv", stack.root / "votes3.csv"
    printed = export(stack, project_id, "--out", str(out), "--details", "--screening", "none", "--votes", str(votes))
    assert "screening none: 0 rater(s) rejected" in printed
    rows = {r["Image_Name"]: r for r in read_csv(out)}
    for name in names:
        scores = [g[name] for g in given.values() if g[name] is not None]
        row = rows[name]
        assert int(row["N_Ratings"]) == len(scores) == (2 if name == skip else 3)
        assert float(row["MOS"]) == pytest.approx(statistics.fmean(scores), abs=1e-3)
        assert float(row["Std"]) == pytest.approx(statistics.stdev(scores), abs=1e-3)
        half = stats.t.ppf(0.975, len(scores) - 1) * statistics.stdev(scores) / len(scores) ** 0.5
        assert float(row["CI95"]) == pytest.approx(half, abs=1e-3)
        assert row["Aggregation"] == "none" and row["N_Rejected"] == "0" and row["Source"] == "human"

    # The votes file: every annotation (the skip too), with the rater's e-mail and lead time.
    lines = read_csv(votes)
    assert len(lines) == 3 * len(names)
    assert {(r["Email"], r["Image_Name"]) for r in lines} == {(e, n) for e in raters for n in names}
    for line in lines:
        value = given[line["Email"]][line["Image_Name"]]
        assert line["Skipped"] == ("1" if value is None else "0")
        assert line["Score"] == ("" if value is None else f"{value:g}")
        assert line["Counted"] == ("0" if value is None else "1")
        assert float(line["Lead_Time_S"]) == (0.9 if line["Email"] == "ann3@example.net" else 6.5)
        assert line["Rater"].startswith("user:") and line["Created"]

    # Screening by the subject model: the careless rater goes (their gold misses already say so);
    # the rater report tells why, and the MOS leaves their ratings out.
    report = stack.root / "raters3.csv"
    printed = export(stack, project_id, "--out", str(out), "--details", "--screening", "mle",
                     "--raters-report", str(report))
    assert "screening mle: 1 rater(s) rejected" in printed and report.with_suffix(".png").stat().st_size > 5000
    by_email = {r["Email"]: r for r in read_csv(report)}
    assert by_email["ann3@example.net"]["Rejected"] == "1" and "gold" in by_email["ann3@example.net"]["Reason"]
    assert by_email["ann3@example.net"]["Gold_Rated"] == "2" and int(by_email["ann3@example.net"]["Gold_Correct"]) < 2
    assert by_email["ann3@example.net"]["Median_Lead_Time_S"] == "0.9"
    for email in ("ann1@example.com", "ann2@example.com"):
        assert by_email[email]["Rejected"] == "0" and by_email[email]["Gold_Correct"] == "2"
        assert float(by_email[email]["SRCC_With_Others"]) > float(by_email["ann3@example.net"]["SRCC_With_Others"])
    assert by_email["ann2@example.com"]["Skipped"] == "1" and by_email["ann2@example.com"]["Ratings"] == "12"
    rows = {r["Image_Name"]: r for r in read_csv(out)}
    assert all(r["Aggregation"] == "mle" and r["N_Rejected"] == "1" for r in rows.values())
    assert rows[skip]["N_Ratings"] == "1" and rows[skip]["Std"] == ""


def test_ten_raters_bt500_and_the_subject_model_reject_the_one_who_rates_at_random(stack: Stack) -> None:
    """BT.500's test needs many raters per image (README): 9 careful ones and 1 careless one."""
    levels = level_of(stack)
    names = [f"img{i}.png" for i in [14, 19, 20, 21, 22, 23, 24, 25, 26]] + ["img15.jpg", "img16.jpg", "img17.jpg"]
    project_id = seed(stack, study_folder(stack, "study10", names), "--raters", "10", "-n", "3")
    emails = [f"panel{k}@example.com" for k in range(10)]
    for k, email in enumerate(emails):
        score = careless(email) if k == 7 else careful(levels, email, (-1) ** k * k)
        assert len(rate_stream(stack, join(stack, email), project_id, score, 5.0)) == len(names)
    careless_id = next(r["Rater"] for r in read_csv(_votes(stack, project_id)) if r["Email"] == emails[7])
    for method, reason in (("bt500", "BT.500"), ("mle", "inconsistency")):
        printed = export(stack, project_id, "--out", str(stack.root / f"study10-{method}.csv"), "--screening", method)
        assert f"screening {method}: 1 rater(s) rejected" in printed, printed
        assert re.search(rf"{careless_id}: {reason}", printed), printed


def _votes(stack: Stack, project_id: int) -> Path:
    path = stack.root / f"votes-{project_id}.csv"
    export(stack, project_id, "--out", str(stack.root / f"mos-{project_id}.csv"), "--votes", str(path))
    return path
