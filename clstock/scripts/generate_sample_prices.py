"""Generate ClStock's SYNTHETIC sample prices (daily OHLCV bars, weekdays only).

The bars feed the offline Yahoo replay (``app/market_replay.py``). They are a seeded
geometric random walk per stock, not market data: each stock has its own plausible yen
price level, drift and volatility, so momentum scores differ between stocks. The output
is byte-for-byte reproducible (stdlib ``random`` seeded per ticker, fixed formatting),
and a test regenerates it and compares it with the committed files.

    python clstock/scripts/generate_sample_prices.py [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

__all__ = ["END_DATE", "SEED", "START_DATE", "STOCKS", "Stock", "generate", "main"]

SEED = 20261030
START_DATE = date(2024, 1, 1)
END_DATE = date(2026, 10, 30)  # the replay's "today": ranges are measured back from here
DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "data" / "sample_prices"
PRICE_HEADER = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
SYMBOL_HEADER = ["Symbol", "Name", "Sector", "Industry", "SharesOutstanding"]
_TRADING_DAYS = 252


@dataclass(frozen=True)
class Stock:
    """One synthetic stock: reference data and random-walk parameters."""

    code: str
    name: str
    sector: str
    industry: str
    shares_outstanding: int
    start_price: float  # yen
    drift: float  # annualised
    volatility: float  # annualised
    volume: int  # typical shares traded per day


STOCKS: tuple[Stock, ...] = (
    Stock("7203", "Toyota Motor", "Consumer Cyclical", "Auto Manufacturers",
          13_000_000_000, 2_650.0, 0.08, 0.26, 28_000_000),
    Stock("6758", "Sony Group", "Technology", "Consumer Electronics",
          6_100_000_000, 2_700.0, 0.22, 0.30, 11_000_000),
    Stock("9984", "SoftBank Group", "Communication Services", "Telecom Services",
          1_430_000_000, 6_300.0, 0.30, 0.45, 9_000_000),
    Stock("6861", "Keyence", "Technology", "Scientific & Technical Instruments",
          243_000_000, 62_000.0, -0.05, 0.28, 600_000),
    Stock("8306", "Mitsubishi UFJ Financial Group", "Financial Services",
          "Banks - Diversified", 12_000_000_000, 1_200.0, 0.25, 0.30, 45_000_000),
    Stock("9432", "Nippon Telegraph and Telephone", "Communication Services",
          "Telecom Services", 83_000_000_000, 168.0, -0.10, 0.18, 160_000_000),
    Stock("4063", "Shin-Etsu Chemical", "Basic Materials", "Specialty Chemicals",
          1_980_000_000, 5_900.0, -0.02, 0.30, 6_000_000),
    Stock("6098", "Recruit Holdings", "Industrials", "Staffing & Employment Services",
          1_500_000_000, 6_000.0, 0.18, 0.32, 4_500_000),
    Stock("8035", "Tokyo Electron", "Technology", "Semiconductor Equipment & Materials",
          460_000_000, 25_000.0, 0.12, 0.42, 4_000_000),
    Stock("9983", "Fast Retailing", "Consumer Cyclical", "Apparel Retail",
          306_000_000, 36_000.0, 0.15, 0.27, 800_000),
    Stock("7974", "Nintendo", "Communication Services", "Electronic Gaming & Multimedia",
          1_160_000_000, 7_400.0, 0.20, 0.30, 8_000_000),
    Stock("4502", "Takeda Pharmaceutical", "Healthcare", "Drug Manufacturers - General",
          1_580_000_000, 4_100.0, 0.00, 0.20, 5_500_000),
)


def _weekdays(start: date, end: date) -> list[date]:
    days = (start + timedelta(n) for n in range((end - start).days + 1))
    return [d for d in days if d.weekday() < 5]


def _bars(stock: Stock, days: list[date]) -> list[list[str]]:
    # A string seed is hashed with SHA-512 by `random`, so every ticker gets its own
    # stream, stable across runs and Python versions, unaffected by the others.
    rng = random.Random(f"{SEED}-{stock.code}")
    daily_vol = stock.volatility / math.sqrt(_TRADING_DAYS)
    daily_drift = stock.drift / _TRADING_DAYS - daily_vol**2 / 2
    close = stock.start_price
    rows = []
    for day in days:
        z = rng.gauss(0.0, 1.0)
        open_ = close * math.exp(rng.gauss(0.0, daily_vol * 0.3))  # overnight gap
        close = close * math.exp(daily_drift + daily_vol * z)
        high = max(open_, close) * (1 + abs(rng.gauss(0.0, daily_vol * 0.4)))
        low = min(open_, close) * (1 - abs(rng.gauss(0.0, daily_vol * 0.4)))
        # Busier days on bigger moves, as in real markets.
        volume = stock.volume * math.exp(rng.gauss(0.0, 0.25)) * (1 + 0.5 * abs(z))
        o, c = round(open_, 1), round(close, 1)
        h, lo = max(round(high, 1), o, c), min(round(low, 1), o, c)
        # No dividends or splits in this universe, so Adj Close equals Close.
        rows.append([day.isoformat(), f"{o:.1f}", f"{h:.1f}", f"{lo:.1f}", f"{c:.1f}",
                     f"{c:.1f}", str(int(volume) // 100 * 100)])  # TSE lot size is 100
    return rows


def generate(out_dir: Path = DEFAULT_OUT_DIR) -> list[Path]:
    """Write ``<code>.T.csv`` for every stock and ``symbols.csv``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    days = _weekdays(START_DATE, END_DATE)
    written = []
    for stock in STOCKS:
        path = out_dir / f"{stock.code}.T.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(PRICE_HEADER)
            writer.writerows(_bars(stock, days))
        written.append(path)
    path = out_dir / "symbols.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SYMBOL_HEADER)
        writer.writerows([f"{s.code}.T", s.name, s.sector, s.industry, s.shares_outstanding]
                         for s in STOCKS)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)


if __name__ == "__main__":
    main()
