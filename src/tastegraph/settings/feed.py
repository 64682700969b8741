"""The ``[feed]`` section: every parameter of the served feed engine (``FeedParams``).

The engine keeps its own plain dataclass (``feed.data.FeedParams``, no settings import);
this model mirrors it field for field with descriptions and bounds, and a test checks that the
names and defaults are the same. Set them in ``tastegraph.toml`` under ``[feed]`` or as
``TASTEGRAPH_FEED_<FIELD>``. Fields that shape what the ranker learns are part of the saved
model's digest: changing one needs ``tastegraph train`` again (a saved model refuses to load).
"""

from __future__ import annotations

from pydantic import Field

from tastegraph.settings.sections import Section

__all__ = ["FeedSettings"]


class FeedSettings(Section):
    """The served feed: candidate sources, blending, the explore/exploit bandit and training."""

    # history and interests
    max_history: int = Field(100, ge=1, description="Engaged pins kept per user.")
    interest_half_life_days: float = Field(
        14.0, gt=0, description="Half-life of an engagement's weight in a user's interests, days."
    )
    recent_half_life_h: float = Field(
        6.0, gt=0, description='Fading of the "latest engagements" signal: half-life in hours.'
    )
    cluster_threshold: float = Field(
        1.0, gt=0, description="Ward cut that splits a user's history into interests."
    )
    max_clusters: int = Field(8, ge=1, description="Most interests kept per user.")
    query_clusters: int = Field(5, ge=1, description="Interests queried per feed call.")
    # generators
    index_kind: str = Field(
        "auto",
        description=(
            "Vector index of the engine's neighbours ('auto', 'hnsw', 'ivf' or 'exact'); when "
            "it is the catalog's index kind the engine shares the catalog's image index."
        ),
    )
    ann_k: int = Field(
        300, ge=1, description="Interest neighbours in total, split among interests by importance."
    )
    ann_k_min: int = Field(30, ge=0, description="Fewest neighbours asked for any one interest.")
    walk_steps: int = Field(8000, ge=0, description="Random-walk steps per feed call (Pixie).")
    walk_walkers: int = Field(
        1024,
        ge=1,
        description="Walkers per numpy step: fewer, longer steps cost more.",
    )
    walk_restart: float = Field(
        0.35, gt=0, le=1, description="Probability a walker jumps back to its seed after a step."
    )
    walk_board_prob: float = Field(
        0.35, ge=0, le=1, description="Share of walk steps through boards (the rest via users)."
    )
    walk_seeds: int = Field(16, ge=1, description="Recent engaged pins the walks start from.")
    walk_n_p: int = Field(
        150, ge=1, description="Walks stop early once this many pins were visited n_v times."
    )
    walk_n_v: int = Field(4, ge=1, description="Visits that count a pin towards walk_n_p.")
    n_walk: int = Field(200, ge=0, description="Candidates taken from the random walks.")
    user_degree_cap: int = Field(
        200, ge=1, description="Pixie-style pruning of very active users: most edges kept each."
    )
    cf_k: int = Field(50, ge=1, description="Co-engagement (item CF) neighbours kept per pin.")
    cf_max_per_user: int = Field(
        60, ge=1, description="Only each user's last this many distinct pins count for item CF."
    )
    n_cf: int = Field(200, ge=0, description="Candidates taken from co-engagement (item CF).")
    n_behaviour: int = Field(
        500,
        ge=0,
        description=(
            "Candidates the behaviour source (EASE item-item weights over who engaged with what, "
            "fitted by `tastegraph train`) proposes per request from each history; 0 turns it off."
        ),
    )
    behaviour_l2: float = Field(
        500.0,
        gt=0,
        description="EASE ridge penalty of the behaviour source (larger favours popular pins).",
    )
    behaviour_decay: bool = Field(
        False,
        description=(
            "Behaviour source history weights: false counts each engaged pin once (EASE's own "
            "input), true decays them with age."
        ),
    )
    behaviour_max_pins: int = Field(
        3000,
        ge=0,
        le=20000,
        description=(
            "Pins the behaviour source covers, the most engaged: bounds its memory (max^2 float32: "
            "3,000 -> 36 MB) and fit (an O(max^3) inverse) whatever the catalog size."
        ),
    )
    n_popular: int = Field(150, ge=0, description="Candidates taken from popular pins.")
    popular_per_cluster: int = Field(
        3, ge=0, description="Popular pins taken per coarse visual cluster."
    )
    coarse_clusters: int = Field(
        32, ge=1, description="Coarse visual clusters (k-means) of the catalog for popular pins."
    )
    n_fresh: int = Field(60, ge=0, description="Candidates taken from fresh pins.")
    fresh_days: float = Field(3.0, gt=0, description="A pin is fresh this many days after upload.")
    pop_half_life_days: float = Field(
        7.0, gt=0, description="Half-life of an engagement's weight in popularity, days."
    )
    related_walk_steps: int = Field(
        3000, ge=0, description="Random-walk steps for a pin's related pins."
    )
    # blending
    mmr_lambda: float = Field(
        0.8, ge=0, le=1, description="MMR trade-off of relevance (1) against diversity (0)."
    )
    board_cap: int = Field(2, ge=1, description="Most pins of one board within cap_window.")
    label_cap: int = Field(3, ge=1, description="Most pins of one label within cap_window.")
    cap_window: int = Field(10, ge=1, description="Window of the board and label caps, in slots.")
    hide_threshold: float = Field(
        0.75,
        ge=-1,
        le=1,
        description=(
            "Cosine above which a hidden pin's look-alikes are pushed down. Unset, the server "
            "adapts it to the catalog (the 99th percentile of random pairs' cosines); set, it "
            "is used as given."
        ),
    )
    hide_strength: float = Field(1.0, ge=0, description="How hard a hide pushes look-alikes down.")
    hide_neighbours: int = Field(
        8,
        ge=0,
        description=(
            "A hide pushes down pins at least as close to the hidden pin as its "
            "hide_neighbours-th nearest neighbour (and above hide_threshold), not its interest."
        ),
    )
    # budgets
    explore_share_min: float = Field(
        0.04, ge=0, le=1, description="Least share of a page's slots the bandit gives to explore."
    )
    explore_share_max: float = Field(
        0.25, ge=0, le=1, description="Largest share of a page's slots the bandit gives to explore."
    )
    fresh_share_max: float = Field(
        0.12,
        ge=0,
        le=1,
        description="Largest share of a page fresh pins fill (a bulk import must not flood feeds).",
    )
    # bandit
    exploit_prior: tuple[float, float] = Field(
        (2.0, 2.0),
        description="Beta prior (successes, failures) of the exploit arm before any data.",
    )
    explore_prior: tuple[float, float] = Field(
        (1.0, 2.0),
        description="Beta prior (successes, failures) of the explore arm before any data.",
    )
    bandit_prior_strength: float = Field(
        50.0,
        ge=0,
        description="Impressions the population's rate per arm is worth against a user's own.",
    )
    bandit_discount: float = Field(
        0.995, gt=0, le=1, description="Per-update discount of old bandit evidence."
    )
    hide_failures: float = Field(
        3.0, ge=0, description="Bandit failures one hide counts as (a plain skip counts one)."
    )
    seen_cap: int = Field(5000, ge=1, description="Pins remembered as seen per user.")
    served_cap: int = Field(500, ge=1, description="Pins remembered as served per user.")
    # event weights
    w_closeup: float = Field(0.4, ge=0, description="Weight of a close-up in a user's history.")
    w_click: float = Field(0.7, ge=0, description="Weight of a click in a user's history.")
    w_save: float = Field(1.0, ge=0, description="Weight of a save in a user's history.")
    dwell_min_ms: float = Field(
        2000.0, ge=0, description="Shortest dwell, in ms, that counts as engagement."
    )
    dwell_full_ms: float = Field(
        30000.0, gt=0, description="Dwell, in ms, at which a dwell gets its full weight."
    )
    # training
    train_fraction: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="The first share of the log builds state for training, the rest labels.",
    )
    max_train_requests: int = Field(6000, ge=1, description="Most requests the ranker learns on.")
    label_window_s: float = Field(
        3600.0, gt=0, description="An engagement labels a request at most this long after it, s."
    )
    session_gap_s: float = Field(
        1800.0, gt=0, description="Impressions this far apart, in seconds, are other requests."
    )
    rank_trees: int = Field(100, ge=1, description="Boosted trees of the learned ranker.")
    rank_lr: float = Field(0.08, gt=0, le=1, description="Learning rate of the learned ranker.")
    rank_leaves: int = Field(31, ge=2, description="Leaves per tree of the learned ranker.")
    rank_min_child: int = Field(
        20, ge=1, description="Fewest samples in a leaf of the learned ranker."
    )
    rank_threads: int = Field(
        1,
        ge=1,
        description="LightGBM threads: on two busy cores a second thread made it 6x slower.",
    )
    ipw_clip: float = Field(
        10.0, ge=1, description="Largest inverse-propensity weight of a training label."
    )
    rank_top: int = Field(
        300, ge=1, description="Candidates the learned ranker scores per request."
    )
    seed: int = Field(0, ge=0, description="Seed of the engine's random choices (walks, k-means).")
    # event hygiene (see feed.hygiene)
    event_ts_min: float = Field(
        0.0, description="The engine uses only events dated at or after this (epoch seconds)."
    )
    event_ts_max: float = Field(
        4102444800.0,
        description="The engine uses only events dated before this (epoch seconds; 2100-01-01).",
    )
    event_max_future_s: float = Field(
        3600.0,
        ge=0,
        description="When the clock is known, events more than this many s ahead are skipped.",
    )
    read_slots: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Feed and related requests one server process computes at once, the others waiting "
            "first come first served; 0 means no limit. Python threads mostly trade the "
            "interpreter lock: 1 kept 4 concurrent callers at the throughput of one and cut "
            "the feed p99 (`python bench/bench_feed_threads.py`)."
        ),
    )
