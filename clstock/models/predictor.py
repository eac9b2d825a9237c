"""Stock scoring and ranking.

``StockPredictor`` scores a symbol from 0 (avoid) to 100 (strong buy) from its recent
price history. Two concrete predictors override ``calculate_score``:

- ``MomentumPredictor``: a rule-based score from returns, moving averages and RSI.
- ``MLStockPredictor``: a ridge regression of the 20-day forward return on technical
  features, trained by ``train()`` (lazily on the default universe when needed).

``CLSTOCK_PREDICTOR`` (``momentum`` or ``ml``) picks the one ``create_predictor`` builds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config.settings import DEFAULT_SYMBOLS, get_settings
from data.stock_data import DataFetchError, StockDataProvider

__all__ = [
    "BatchPrediction",
    "MLStockPredictor",
    "MomentumPredictor",
    "Prediction",
    "Recommendation",
    "StockPredictor",
    "TrainingMetrics",
    "create_predictor",
]

logger = logging.getLogger(__name__)

FEATURE_NAMES: tuple[str, ...] = (
    "return_5d", "return_20d", "return_60d", "price_to_sma20", "sma20_to_sma60",
    "rsi_14", "volatility_20d", "volume_ratio",
)
HORIZON_DAYS = 20  # the forward return the ML model learns
MIN_HISTORY = 61  # rows needed for the 60-day features


@dataclass(frozen=True)
class Recommendation:
    rank: int
    symbol: str
    name: str
    score: float


@dataclass(frozen=True)
class Prediction:
    symbol: str
    score: float
    predicted_return: float


@dataclass
class BatchPrediction:
    results: list[Prediction] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingMetrics:
    samples: int
    features: int
    symbols: tuple[str, ...]
    validation_rmse: float
    validation_samples: int


def technical_features(data: pd.DataFrame) -> pd.DataFrame:
    """One row of technical indicators per trading day (NaN until enough history)."""
    close = data["Close"].astype(float)
    volume = data["Volume"].astype(float)
    sma20 = close.rolling(20).mean()
    sma60 = close.rolling(60).mean()
    delta = close.diff()
    gain = delta.clip(lower=0).rolling(14).mean()
    loss = (-delta.clip(upper=0)).rolling(14).mean()
    rsi = 100 - 100 / (1 + gain / loss.replace(0, np.nan))
    return pd.DataFrame(
        {
            "return_5d": close.pct_change(5),
            "return_20d": close.pct_change(20),
            "return_60d": close.pct_change(60),
            "price_to_sma20": close / sma20 - 1,
            "sma20_to_sma60": sma20 / sma60 - 1,
            "rsi_14": rsi.fillna(100.0) / 100.0,
            "volatility_20d": close.pct_change().rolling(20).std(),
            "volume_ratio": volume / volume.rolling(20).mean() - 1,
        },
        index=data.index,
    )


def _clip_score(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 2)


class StockPredictor:
    """Scores and ranks Japanese stocks."""

    def __init__(
        self,
        data_provider: StockDataProvider | None = None,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        period: str = "1y",
    ) -> None:
        self.data_provider = data_provider or StockDataProvider()
        self.symbols = tuple(symbols)
        self.period = period

    def calculate_score(self, symbol: str) -> float:
        """A 0-100 score from the trend of the last quarter."""
        features = self._latest_features(symbol)
        trend = features["sma20_to_sma60"] * 400 + features["return_60d"] * 100
        return _clip_score(50 + trend)

    def predict_score(self, symbol: str) -> float:
        """The score of one symbol (the interface name the batch jobs use)."""
        return self.calculate_score(symbol)

    def predict_return_rate(self, symbol: str) -> float:
        """Expected return over the next 20 trading days implied by the score."""
        return round((self.calculate_score(symbol) - 50) / 500, 4)

    def predict(self, symbol: str) -> Prediction:
        """Score and expected return of one symbol."""
        self.data_provider.company_name(symbol)  # unknown symbols fail before any fetch
        score = self.calculate_score(symbol)
        return Prediction(symbol, score, self.predict_return_rate(symbol))

    def get_top_recommendations(self, top_n: int = 5) -> list[Recommendation]:
        """The ``top_n`` best-scored symbols of the universe, best first."""
        scored: list[tuple[float, str]] = []
        for symbol in self.symbols:
            try:
                scored.append((self.calculate_score(symbol), symbol))
            except DataFetchError as exc:
                logger.warning("Skipping %s in recommendations: %s", symbol, exc.reason)
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [
            Recommendation(rank, symbol, self.data_provider.company_name(symbol), score)
            for rank, (score, symbol) in enumerate(scored[:top_n], start=1)
        ]

    def predict_batch(self, symbols: Iterable[str], max_workers: int = 4) -> BatchPrediction:
        """Score many symbols on a thread pool; failures are reported per symbol."""
        batch = BatchPrediction()
        unique = list(dict.fromkeys(symbols))
        known = []
        for symbol in unique:
            if symbol in self.data_provider.jp_stock_codes:
                known.append(symbol)
            else:
                batch.failed[symbol] = f"Unknown symbol: {symbol}"
        if not known:
            return batch
        with ThreadPoolExecutor(max_workers=min(max_workers, len(known))) as pool:
            futures = {symbol: pool.submit(self.calculate_score, symbol) for symbol in known}
        for symbol, future in futures.items():
            try:
                score = future.result()
            except Exception as exc:  # a failing symbol must not fail the batch
                batch.failed[symbol] = str(exc)
            else:
                batch.results.append(Prediction(symbol, score, round((score - 50) / 500, 4)))
        logger.info("Batch of %d symbols: %d scored, %d failed",
                    len(unique), len(batch.results), len(batch.failed))
        return batch

    def train(
        self, symbols: Sequence[str] | None = None, period: str = "2y"
    ) -> TrainingMetrics:
        """Fit the return model on ``symbols`` (default: the universe) and validate it."""
        symbols = tuple(symbols or self.symbols)
        train_x, train_y, valid_x, valid_y = [], [], [], []
        for symbol in symbols:
            data = self.data_provider.get_stock_data(symbol, period)
            features = technical_features(data)
            target = data["Close"].shift(-HORIZON_DAYS) / data["Close"] - 1
            usable = features.assign(target=target).dropna()
            if len(usable) < 10:
                continue
            cut = int(len(usable) * 0.8)  # chronological split: validate on the latest days
            train_x.append(usable.iloc[:cut, :-1].to_numpy())
            train_y.append(usable["target"].iloc[:cut].to_numpy())
            valid_x.append(usable.iloc[cut:, :-1].to_numpy())
            valid_y.append(usable["target"].iloc[cut:].to_numpy())
        if not train_x:
            raise ValueError("Not enough history to train on " + ", ".join(symbols))
        model = _RidgeModel.fit(np.vstack(train_x), np.concatenate(train_y))
        x_valid, y_valid = np.vstack(valid_x), np.concatenate(valid_y)
        rmse = float(np.sqrt(np.mean((model.predict(x_valid) - y_valid) ** 2)))
        self.model = model
        metrics = TrainingMetrics(
            samples=int(sum(len(y) for y in train_y)),
            features=len(FEATURE_NAMES),
            symbols=symbols,
            validation_rmse=round(rmse, 6),
            validation_samples=len(y_valid),
        )
        logger.info("Trained on %d samples from %d symbols, validation RMSE %.4f",
                    metrics.samples, len(symbols), rmse)
        return metrics

    def _latest_features(self, symbol: str) -> pd.Series:
        data = self.data_provider.get_stock_data(symbol, self.period)
        if len(data) < MIN_HISTORY:
            raise DataFetchError(symbol, f"only {len(data)} days of history")
        return technical_features(data).iloc[-1].fillna(0.0)


class MomentumPredictor(StockPredictor):
    """Rule-based momentum: recent returns, moving-average alignment and RSI."""

    def calculate_score(self, symbol: str) -> float:
        f = self._latest_features(symbol)
        score = (
            50
            + f["return_20d"] * 150
            + f["return_60d"] * 60
            + f["sma20_to_sma60"] * 250
            + (f["rsi_14"] - 0.5) * 30
            - f["volatility_20d"] * 200
        )
        return _clip_score(score)


class MLStockPredictor(StockPredictor):
    """Scores from a ridge regression of the 20-day forward return."""

    model: _RidgeModel | None = None
    _train_lock = threading.Lock()

    def calculate_score(self, symbol: str) -> float:
        return _clip_score(50 + self.predict_return_rate(symbol) * 500)

    def predict_return_rate(self, symbol: str) -> float:
        self._ensure_trained()
        assert self.model is not None
        features = self._latest_features(symbol).reindex(FEATURE_NAMES)
        return round(float(self.model.predict(features.to_numpy()[None, :])[0]), 4)

    def _ensure_trained(self) -> None:
        if self.model is None:
            with self._train_lock:
                if self.model is None:
                    self.train()


class _RidgeModel:
    """Standardised ridge regression, closed form (no scikit-learn needed)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: float) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> _RidgeModel:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        gram = z.T @ z + alpha * np.eye(z.shape[1])
        coef = np.linalg.solve(gram, z.T @ (y - y.mean()))
        return cls(mean, scale, coef, float(y.mean()))

    def predict(self, x: np.ndarray) -> np.ndarray:
        result = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return np.where(np.isfinite(result), result, 0.0)


_PREDICTORS: dict[str, type[StockPredictor]] = {
    "momentum": MomentumPredictor,
    "ml": MLStockPredictor,
    "trend": StockPredictor,
}


def create_predictor(
    name: str | None = None, data_provider: StockDataProvider | None = None
) -> StockPredictor:
    """The predictor named by ``name`` or ``CLSTOCK_PREDICTOR`` (default momentum)."""
    name = name or get_settings().predictor
    try:
        cls = _PREDICTORS[name]
    except KeyError:
        logger.warning("Unknown CLSTOCK_PREDICTOR %r; using momentum (known: %s)",
                       name, ", ".join(sorted(_PREDICTORS)))
        cls = MomentumPredictor
    return cls(data_provider=data_provider)

