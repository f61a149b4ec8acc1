"""Pull the analysis dataset (wide CSV export) through the eCRF's API and estimate drug survival at
week 52 (day 364, SPEC section 5) with lifelines; the study's own estimate (outcomes/all/) beside it.
Run: ECRF_URL=http://127.0.0.1:8000 ECRF_TOKEN=ecrf_... python docs/api_example.py (docs/api.md)."""

import io
import os
import time

import httpx
import pandas as pd
from lifelines import KaplanMeierFitter

url, token = os.environ.get("ECRF_URL", "http://127.0.0.1:8000"), os.environ["ECRF_TOKEN"]
api = httpx.Client(base_url=f"{url}/api/v1/", headers={"Authorization": f"Token {token}"}, timeout=600)
job = api.post("exports/", json={"kind": "wide_csv"}).json()
while job["status"] not in ("done", "failed"):
    time.sleep(1)
    job = api.get(f"exports/{job['id']}/").json()
data = pd.read_csv(io.BytesIO(api.get(job["download"]).content)).query("included == 'yes'")
km = KaplanMeierFitter().fit(data["survival_days"], data["survival_event"] == "yes")
print(f"{len(data)} included patients; week-52 drug survival (lifelines): {float(km.predict(364))}")
print("the study's own (outcomes/all/):", api.get("outcomes/all/").json()["outcomes"]["drug_survival"]["week_52"])
