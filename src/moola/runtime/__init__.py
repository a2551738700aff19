"""The paper and live decision loop: bars -> features -> members -> ensemble -> calibration
-> tiers -> risk -> sizing -> order intents -> broker, every decision journaled before it
acts (``moola live``).

It uses the backtest's own rule objects and costs (``moola.sim``), the promoted runs'
``Predictor`` bundles (``moola.pipeline``) and the SQL journal (``moola.tracking``). Needs
the ``live`` extra (``pip install 'moola[live]'``: SQLAlchemy, Alembic, psycopg, httpx,
PyJWT).
"""
