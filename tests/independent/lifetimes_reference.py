"""Reference values from `lifetimes` 0.11.3 (the implementation woostream's CLV must agree with).

    python lifetimes_reference.py predictions SUMMARY.csv   -> JSON: fitted parameters and, per
        customer, P(alive), expected purchases, expected transaction value and 12-month CLV
    python lifetimes_reference.py fit-time SUMMARY.csv       -> JSON: parameters and fit seconds

    python lifetimes_reference.py holdout TRANSACTIONS.txt CAL_END OBS_END -> JSON: the BG/NBD
        fitted on the calibration period (days), and per repeat-purchase group at the cut-off
        (0..6, 7+) the customers, the mean predicted and the mean actual holdout purchases

SUMMARY.csv has the columns ID,x,t_x,T,zbar (the CDNOW summary that lifetimes ships);
TRANSACTIONS.txt is CDNOW_sample.txt (customer, sample id, YYYYMMDD, CDs, dollars).
"""
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter

warnings.simplefilter("ignore")

HORIZONS = [1.0, 10.0, 52.0]


def load(path):
    df = pd.read_csv(path)
    df.columns = ["customer_id", "frequency", "recency", "T", "monetary_value"]
    return df


def fit(df):
    started = time.perf_counter()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(df["frequency"], df["recency"], df["T"])
    bg_seconds = time.perf_counter() - started
    returning = df[df["frequency"] > 0]
    started = time.perf_counter()
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(returning["frequency"], returning["monetary_value"])
    gg_seconds = time.perf_counter() - started
    return bgf, ggf, bg_seconds, gg_seconds


def params(bgf, ggf):
    return {
        "bgnbd": {k: float(bgf.params_[k]) for k in ["r", "alpha", "a", "b"]},
        "gamma_gamma": {k: float(ggf.params_[k]) for k in ["p", "q", "v"]},
    }


def holdout(path, cal_end, obs_end):
    from lifetimes.utils import calibration_and_holdout_data

    tx = pd.read_csv(path, sep=r"\s+", header=None, names=["master", "customer_id", "date", "cds", "value"])
    tx["date"] = pd.to_datetime(tx["date"].astype(str), format="%Y%m%d")
    ch = calibration_and_holdout_data(
        tx, "customer_id", "date", calibration_period_end=cal_end, observation_period_end=obs_end, freq="D"
    )
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(ch["frequency_cal"], ch["recency_cal"], ch["T_cal"])
    ch["predicted"] = bgf.conditional_expected_number_of_purchases_up_to_time(
        ch["duration_holdout"], ch["frequency_cal"], ch["recency_cal"], ch["T_cal"]
    )
    ch["group"] = ch["frequency_cal"].clip(upper=7).astype(int)
    groups = []
    for g, rows in ch.groupby("group"):
        groups.append({
            "group": "7+" if g == 7 else str(g),
            "customers": int(len(rows)),
            "predicted": float(rows["predicted"].mean()),
            "actual": float(rows["frequency_holdout"].mean()),
        })
    return {
        "bgnbd": {k: float(bgf.params_[k]) for k in ["r", "alpha", "a", "b"]},
        "by_frequency": groups,
        "predicted": float(ch["predicted"].sum()),
        "actual": float(ch["frequency_holdout"].sum()),
    }


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "holdout":
        json.dump(holdout(path, sys.argv[3], sys.argv[4]), sys.stdout)
        return
    df = load(path)
    bgf, ggf, bg_seconds, gg_seconds = fit(df)
    out = params(bgf, ggf)
    out["fit_seconds"] = {"bgnbd": bg_seconds, "gamma_gamma": gg_seconds}
    if mode == "predictions":
        f, r, t, m = df["frequency"], df["recency"], df["T"], df["monetary_value"]
        out["customers"] = {
            "frequency": f.tolist(),
            "recency": r.tolist(),
            "age": t.tolist(),
            "mean_value": m.tolist(),
            "p_alive": bgf.conditional_probability_alive(f, r, t).tolist(),
            "expected_purchases": {
                str(h): bgf.conditional_expected_number_of_purchases_up_to_time(h, f, r, t).tolist()
                for h in HORIZONS
            },
            "expected_value": ggf.conditional_expected_average_profit(f, m).tolist(),
            "clv_12_months": ggf.customer_lifetime_value(
                bgf, f, r, t, m, time=12, discount_rate=0.01, freq="W"
            ).tolist(),
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
