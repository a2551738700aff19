"""Ensemble members: promoted runs that turn a symbol's recent bars into p(up).

A member is a promoted run (``Predictor.from_promoted``: every byte checked against the
promoted listing) playing one role: ``direction`` (a per-symbol model), ``trend`` (a
multi-symbol model, possibly with a symbol embedding) or ``rl`` (a promoted RL run's
policy, :class:`PolicyMember`). Its output per closed bar is one number, the probability
that price goes up, computed the run's own way (raw windows -> input view -> estimator ->
the run's calibrator; with the session's ``calibration`` off, the estimator's raw
probabilities).

**The RL member** (:class:`PolicyMember`) keeps one ``moola.rl.policy.LivePolicy`` per
symbol, fed each closed bar once (its observation window built bar by bar and its own
book, exactly as the training environment steps: see that module). Its answer is the
policy's *target position* after its deterministic action at the bar, mapped to
``0.5 * (1 + target / max_position)``: full long 1, flat 0.5, full short 0 (a
``discrete12`` policy holding a quarter long answers 0.625). Why the target and not the
action distribution's mass of long against short: the target is what the policy does,
the same greedy decision its promotion gate judged (its evaluation return is that of
these targets), and it is defined the same way for all three action spaces (a
``continuous`` policy has no "mass of long", and a ``discrete12`` action is relative to
the held position); an action distribution's probabilities are not calibrated
probabilities of "up" either, and shift with the entropy bonus it trained with. A
long-only policy answers in [0.5, 1]: flat is no opinion, never a short signal. The
session's ``calibration`` does not apply (the policy has no calibrator).

What runs live: any promoted RL run of the three action spaces, with or without coarser
timescales (each ``window_<timeframe>`` built bar by bar from the coarse bars completed
by the bar's close, equal to the training environment's; a run whose record names no bar
timeframe takes the session's), under its own execution terms. Refused at load, naming
it: a run trained with per-bar spreads (a list indexed by training-bar position, which no
live bar maps to: ``moola.rl.policy``), a session that does not trade the policy's symbol
or runs another bar timeframe than the policy's. It answers for the symbol its policy
trained on only, with no opt-in: its observations are scaled with that symbol's
statistics (another symbol's returns and volumes would be off the distribution it
trained on, its book in units of another price). For another symbol, and while its
windows fill, its value is None: the ensemble leaves it out, renormalises, and the
decision's ``missing`` names it; :meth:`PolicyMember.missing_reason` says why in words.
Its value is a function of the bars alone, so a session's parity replay recomputes it:
replayed bars that do not follow the last bar the member saw start a fresh policy for
that symbol.

**Mapping the run's classes to "up".** The member config names ``up_class`` (default
``"up"``). For a run with two classes the value is ``p(up_class)`` (the other class is
"not up"). With ``down_class`` also named, the value is ``p(up) / (p(up) + p(down))``:
the other classes (e.g. "flat") are left out and the two directions renormalised; when
both are 0 the member has no opinion (0.5). A run of more than two classes without
``down_class`` gives ``p(up_class)``. A class the run does not have is refused, naming the
run's classes.

**What a member reads.** A run trained on raw-bar windows reads its last ``length`` bars
(``columns`` must be bar fields). A run trained on feature windows reads its last
``length`` rows of the session's feature set, computed incrementally by the engine
(``IncrementalFeatures``, equal to the batch rows): its feature set must be the session's
(same spec), else it is refused naming both. A multi-symbol run with a symbol embedding
must know every session symbol. Until enough bars (or settled feature rows) exist, the
member's value is None (missing: the ensemble renormalises over the others).

**The bar timeframe.** A run's window is so many bars of the timeframe it trained on: a
run trained on 5m windows fed 1m bars reads a fifth of the span it learned from, and
trades on it. A supervised run's manifest does not name its timeframe; its dataset
lineage does (:func:`run_timeframes`: the promoted manifest's dataset -> that version's
``meta.json`` ``raw`` reference, or each ``feature_tables`` raw -> the raw version's
``meta.json`` ``timeframe``, what ``Registry.write_raw`` recorded from the bars). A run
whose raw bars are of another timeframe than the session's is refused at load, naming the
run, its timeframe and the session's. A run trained on several timeframes (raw bars that
mixed them) fits a session of any of them. A run whose lineage names no timeframe (its
dataset is not in this data root, or does not name its raw bars) is **accepted, with a
warning** logged and kept on the member (``Member.note``, for the session's record): a
promoted model is built to predict from its promoted folder alone (``Predictor.
from_promoted``: "predicts even after its run folder is gone"), so a data root holding
promoted models but not their training data (a trading host) is a supported setup that a
refusal would make unusable with no way around it; and an RL run whose record names no
timeframe likewise takes the session's. Refused is what is known not to fit, not what
cannot be checked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, MoolaError
from moola.core.integrity import read_json_bytes
from moola.core.timeframes import parse_timeframe
from moola.data.registry import Registry
from moola.features.featureset import FeatureSet
from moola.pipeline.predictor import Predictor
from moola.runtime.config import LiveConfig, MemberConfig
from moola.runtime.feed import BAR_FIELDS
from moola.tracking.manifest import parse_train_manifest
from moola.tracking.runs import MANIFEST_FILE, RunStore

if TYPE_CHECKING:
    from moola.rl.policy import LivePolicy

__all__ = ["Member", "PolicyMember", "load_members", "run_timeframes", "up_probability"]

log = logging.getLogger(__name__)


def up_probability(proba: np.ndarray, classes: Sequence[str], up: str, down: str | None) -> float:
    """p(up) from one row of class probabilities ``proba`` (see the module docstring)."""
    row = np.asarray(proba, dtype=np.float64).reshape(-1)
    p_up = float(row[list(classes).index(up)])
    if down is None:
        return min(1.0, max(0.0, p_up))
    p_down = float(row[list(classes).index(down)])
    total = p_up + p_down
    return 0.5 if total <= 0.0 else p_up / total


class _Configured:
    """What every member kind reads off its ``MemberConfig``: name, run and weight."""

    config: MemberConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def run_id(self) -> str:
        return self.config.run

    @property
    def weight(self) -> float:
        return self.config.resolved_weight


@dataclass(frozen=True)
class Member(_Configured):
    """One loaded member: its config, the run's ``Predictor`` and what it reads.

    ``bars_needed``: bars of history the member's window reads (raw-window runs);
    ``rows_needed``: settled feature rows (feature-window runs; 0 otherwise).
    """

    config: MemberConfig
    predictor: Predictor
    calibrated: bool = True
    """Apply the run's calibrator (the session's ``calibration``); False: the estimator's
    raw probabilities."""
    note: str = ""
    """What the load could not check, in words for the session's record (a run whose
    lineage names no bar timeframe: module docstring); empty when everything was."""

    @property
    def reads_features(self) -> bool:
        return self.predictor.feature_set is not None

    @property
    def bars_needed(self) -> int:
        return 0 if self.reads_features else self.predictor.length

    @property
    def rows_needed(self) -> int:
        return self.predictor.length if self.reads_features else 0

    def value(self, symbol: str, bars: pd.DataFrame, rows: pd.DataFrame | None) -> float | None:
        """p(up) at the last bar of ``bars`` (this symbol's recent bars, oldest first) or of
        ``rows`` (its recent feature rows, the session feature set's columns); None while
        there are too few, or the feature rows are still warming up (NaN)."""
        p = self.predictor
        if self.reads_features:
            if rows is None or len(rows) < p.length:
                return None
            window = rows[list(p.columns)].to_numpy(dtype=np.float32)[-p.length :][None]
            if not np.isfinite(window).all():
                return None
            if p.symbols:
                ids = np.full((1, p.length, 1), p.symbols.index(symbol), dtype=np.float32)
                window = np.concatenate([window, ids], axis=2)
            proba = self._proba(window)
        else:
            if len(bars) < p.length:
                return None
            proba = self._proba(bars.iloc[-p.length :])
        return up_probability(proba[0], p.classes, self.config.up_class, self.config.down_class)

    def _proba(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        p = self.predictor
        if self.calibrated or p.calibrator is None:
            return p.predict_proba(inputs)
        return p.estimator.predict_proba(p.inputs_of(inputs))


@dataclass
class PolicyMember(_Configured):
    """An ``rl`` member: a promoted RL run's policy, one ``LivePolicy`` (its own window
    and book) per symbol, all sharing the agent (module docstring)."""

    config: MemberConfig
    policy: LivePolicy
    """The loaded policy; each symbol gets a ``fresh()`` copy of it."""
    _symbols: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def reads_features(self) -> bool:
        return False

    @property
    def bars_needed(self) -> int:
        """Bars of history for a policy that starts mid-stream (warm-up plus window)."""
        return self.policy.bars_needed

    @property
    def rows_needed(self) -> int:
        return 0

    def value(self, symbol: str, bars: pd.DataFrame, rows: pd.DataFrame | None) -> float | None:
        """The policy's up-probability at the last bar of ``bars`` (this symbol's recent
        bars, oldest first): the bars after the last one it saw are fed to the symbol's
        policy in order; bars that do not follow it start a fresh policy fed the whole
        window. None while its observation window fills, and for a symbol other than the
        one the policy trained on (missing: the ensemble renormalises over the others)."""
        if len(bars) == 0 or symbol != self.policy.symbol:
            return None
        policy = self._symbols.get(symbol)
        seen = None if policy is None else policy.last_time
        stamps = bars["timestamp"]
        if seen is None or _utc(stamps.iloc[-1]) <= seen:
            policy = self._symbols[symbol] = self.policy.fresh()
            new = bars
        elif len(bars) == 1 or _utc(stamps.iloc[-2]) <= seen:
            new = bars.iloc[-1:]  # the usual case: one new bar
        else:
            new = bars[(pd.to_datetime(stamps, utc=True) > seen).to_numpy()]
        step = None
        for bar in new.to_dict("records"):
            step = policy.update(bar)
        return None if step is None else step.probability

    def missing_reason(self, symbol: str) -> str | None:
        """Why :meth:`value` gives nothing for ``symbol`` now, in words for the journal:
        another symbol than the policy's, or windows still filling; None once it answers."""
        if symbol != self.policy.symbol:
            return (
                f"the policy trades {self.policy.symbol} only (its observations are scaled "
                f"with {self.policy.symbol}'s statistics)"
            )
        policy = self._symbols.get(symbol)
        if policy is None or not policy.started:
            seen = 0 if policy is None else policy.bars_seen
            return (
                f"observation windows filling ({seen} bars seen; about "
                f"{self.policy.bars_needed} needed)"
            )
        return None

    def warm(self, symbol: str, bars: pd.DataFrame) -> None:
        """Feed bars without asking for an answer: what an engine replaying bars it had
        already decided before a restart would call, so the policy's window and book go on
        as in an uninterrupted session (``value`` on those bars, answer dropped)."""
        self.value(symbol, bars, None)


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def load_members(
    root: str | Path, config: LiveConfig, feature_set: FeatureSet
) -> tuple[Member | PolicyMember, ...]:
    """The config's members, loaded from the promoted models under data root ``root``.

    Refused with ``ConfigError`` naming the member and the run: a run that is not promoted;
    an ``up_class``/``down_class`` the run does not have; a window that does not fit the
    session's bars (raw columns that are not bar fields, a feature set other than the
    session's ``feature_set``, a symbol the run's embedding does not know); a run trained
    on bars of another timeframe than the session's (``run_timeframes``; a lineage that
    names none is accepted with ``Member.note``, module docstring). An ``rl``
    member must name a promoted RL run (its ``policy.json``; ``moola promote RUN`` on an
    RL run writes it) that runs live (``moola.rl.policy.LivePolicy.check_record``); an RL
    run in another role is refused, naming the role to use.
    """
    promoted = RunStore(root).promoted_dir
    members: list[Member | PolicyMember] = []
    for member in config.members:
        where = f"member {member.role!r} (run {member.run})"
        if not (promoted / member.run).is_dir():
            raise ConfigError(
                f"{where}: run {member.run} is not promoted (no {promoted / member.run}); "
                f"promote it first (`moola promote {member.run}`).",
                param="members",
            )
        is_policy = (promoted / member.run / _POLICY_FILE).is_file()
        if member.role == "rl":
            members.append(_policy_member(root, member, where, is_policy, config))
            continue
        if is_policy:
            raise ConfigError(
                f"{where}: run {member.run} is an RL policy; give it role 'rl'.",
                param="members",
            )
        try:
            predictor = Predictor.from_promoted(root, member.run)
        except MoolaError as exc:
            raise type(exc)(f"{where}: {exc}", param="members") from None
        _check_classes(where, member, predictor)
        _check_fits(where, predictor, config, feature_set)
        note = _check_timeframe(where, root, predictor, config)
        members.append(Member(member, predictor, calibrated=config.calibration, note=note))
    return tuple(members)


def run_timeframes(root: str | Path, run_id: str) -> tuple[tuple[str, ...], str]:
    """The bar timeframes promoted run ``run_id`` trained on, read through its dataset
    lineage under data root ``root`` (module docstring), and the raw versions they come
    from (``"mkt@v1"``, comma-separated); ``((), why)`` when the lineage names none (its
    dataset is not stored here, names no raw bars, or a raw version records no
    timeframe), ``why`` saying which. Reads verified manifests and metas only."""
    store = RunStore(root)
    path = store.promoted_dir / run_id / MANIFEST_FILE
    manifest = parse_train_manifest(
        read_json_bytes(store.read_promoted(run_id, MANIFEST_FILE), path), run_id, path
    )
    recorded = manifest.data.dataset
    registry = Registry(root)
    dataset = f"{recorded.kind} dataset {recorded.pinned}"
    try:
        stored = registry.resolve(recorded.kind, recorded.name, recorded.version)
    except MoolaError:
        return (), f"its {dataset} is not stored in this data root"
    if stored.content_hash != recorded.content_hash:
        return (), f"its {dataset} in this data root is not the version it trained on"
    try:
        meta = registry.meta(stored)
    except MoolaError as exc:
        return (), f"the meta.json of its {dataset} cannot be read: {exc}"
    tables = meta.get("feature_tables") or ()
    raws = [e.get("raw") if isinstance(e, dict) else None for e in tables] or [meta.get("raw")]
    if not all(isinstance(raw, dict) for raw in raws):
        return (), f"its {dataset} names no raw bars"
    found: list[str] = []
    for raw in raws:
        pinned = f"{raw.get('name')}@v{raw.get('version')}"
        try:
            ref = registry.resolve("raw", str(raw["name"]), int(raw["version"]))
        except (MoolaError, KeyError, TypeError, ValueError):
            return (), f"its raw bars {pinned} are not stored in this data root"
        try:
            timeframes = registry.meta(ref).get("timeframe")
        except MoolaError as exc:
            return (), f"the meta.json of its raw bars {pinned} cannot be read: {exc}"
        if isinstance(timeframes, str):
            timeframes = [timeframes]
        if not timeframes:
            return (), f"its raw bars {pinned} record no timeframe"
        found += [str(t) for t in timeframes if str(t) not in found]
    return tuple(found), ", ".join(f"{raw['name']}@v{raw['version']}" for raw in raws)


def _duration(timeframe: str) -> Any:
    """The duration of a bar of ``timeframe``; None for bars that are not of a time frame
    (they fit no session's)."""
    try:
        return parse_timeframe(timeframe)
    except ConfigError:
        return None


def _check_timeframe(where: str, root: str | Path, predictor: Predictor, config: LiveConfig) -> str:
    """Refuse a run trained on bars of another timeframe than the session's (module
    docstring); returns the note (logged) when its lineage names no timeframe."""
    timeframes, source = run_timeframes(root, predictor.run_id)
    if not timeframes:
        note = (
            f"{where}: the bar timeframe it trained on is unknown ({source}); it was not "
            f"checked against the session's {config.timeframe}."
        )
        log.warning(note)
        return note
    session = parse_timeframe(config.timeframe)
    if any(_duration(t) == session for t in timeframes):
        return ""
    trained = "/".join(timeframes)
    raise ConfigError(
        f"{where}: the run was trained on {trained} bars (raw {source}); the session's "
        f"timeframe is {config.timeframe}: its {predictor.length}-bar window would read "
        f"{config.timeframe} bars. Use a run trained on {config.timeframe} bars, or set "
        f"the session's timeframe to {timeframes[0]}.",
        param="timeframe",
    )


#: ``moola.rl.policy.POLICY_FILE`` (spelled here so that a session without an RL member
#: never imports the RL stack).
_POLICY_FILE = "policy.json"


def _policy_member(
    root: str | Path, member: MemberConfig, where: str, is_policy: bool, config: LiveConfig
) -> PolicyMember:
    """The ``rl`` member ``member``: a promoted RL run's live policy, refused when its bars'
    timeframe is not the session's or the session does not trade the symbol it trained on
    (its features were scaled with that symbol's statistics)."""
    if not is_policy:
        raise ConfigError(
            f"{where}: run {member.run} is promoted but is not an RL run (no {_POLICY_FILE} "
            "in its promoted folder); an rl member names a promoted `moola rl train` run.",
            param="members",
        )
    from moola.rl.policy import LivePolicy

    try:
        policy = LivePolicy.from_promoted(root, member.run, timeframe=config.timeframe)
    except MoolaError as exc:
        raise type(exc)(f"{where}: {exc}", param="members") from None
    trained = policy.record.get("timeframe")
    if trained is not None and parse_timeframe(trained) != parse_timeframe(config.timeframe):
        raise ConfigError(
            f"{where}: the policy was trained on {trained} bars; the session's timeframe is "
            f"{config.timeframe}.",
            param="timeframe",
        )
    if policy.symbol not in config.symbols:
        raise ConfigError(
            f"{where}: the policy trades {policy.symbol} (its features are scaled with that "
            f"symbol's statistics); the session's symbols {list(config.symbols)} do not "
            "include it.",
            param="symbols",
        )
    return PolicyMember(member, policy)


def _check_classes(where: str, member: MemberConfig, predictor: Predictor) -> None:
    if predictor.task != "classification":
        raise ConfigError(
            f"{where}: the run is a {predictor.task} model; a member must be a classifier "
            "giving class probabilities.",
            param="members",
        )
    for key, name in (("up_class", member.up_class), ("down_class", member.down_class)):
        if name is not None and name not in predictor.classes:
            raise ConfigError(
                f"{where}: {key} {name!r} is not a class of the run; its classes are "
                f"{list(predictor.classes)}.",
                param=f"members.{key}",
            )


def _check_fits(
    where: str, predictor: Predictor, config: LiveConfig, feature_set: FeatureSet
) -> None:
    """Refuse a member whose input does not fit the session's bars or feature set."""
    fset = predictor.feature_set
    if fset is None:
        foreign = [c for c in predictor.columns if c not in BAR_FIELDS[1:]]
        if foreign:
            raise ConfigError(
                f"{where}: the run reads windows of {predictor.length} bars of columns "
                f"{list(predictor.columns)}, but the feed's bars hold {list(BAR_FIELDS[1:])} "
                f"(not {foreign}).",
                param="members",
            )
    elif fset.spec != feature_set.spec:
        raise ConfigError(
            f"{where}: the run reads {predictor.length} rows of feature set '{fset.name}', but "
            f"the session computes feature set '{feature_set.name}' "
            f"(feature_set); use the run's feature set or another run.",
            param="feature_set",
        )
    elif any(c not in feature_set.columns for c in predictor.columns):
        raise ConfigError(
            f"{where}: the run's columns {list(predictor.columns)} are not all columns of "
            f"feature set '{feature_set.name}'.",
            param="feature_set",
        )
    if predictor.symbols:
        unknown = [s for s in config.symbols if s not in predictor.symbols]
        if unknown:
            raise ConfigError(
                f"{where}: the run embeds symbols {list(predictor.symbols)} and cannot read "
                f"bars of {unknown} (symbols).",
                param="symbols",
            )
