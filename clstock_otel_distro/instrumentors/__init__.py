"""The distro's instrumentors, one module per instrumented target, one class each.

=====================  ==============================  ======================================
module                 class                           traces
=====================  ==============================  ======================================
``predictor``          ClStockPredictorInstrumentor    StockPredictor and all its subclasses
``data_provider``      ClStockDataProviderInstrumentor StockDataProvider, AsyncStockDataProvider
``yfinance``           YFinanceInstrumentor            Ticker.history / info, yf.download
``curl_cffi``          CurlCffiInstrumentor            HTTP client spans of curl_cffi sessions
``methods``            ClStockMethodsInstrumentor      OTEL_PYTHON_CLSTOCK_TRACE_METHODS entries
=====================  ==============================  ======================================

``opentelemetry-instrument`` loads them through the ``opentelemetry_instrumentor``
entry points; by hand::

    from clstock_otel_distro.instrumentors.predictor import ClStockPredictorInstrumentor

    ClStockPredictorInstrumentor().instrument(tracer_provider=provider)

Importing these modules never imports their targets: each patches its target when
the application imports it (see ``_machinery``, the shared machinery).
"""
