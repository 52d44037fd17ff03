"""Training tasks of the generative model, their mix per epoch, and how samples become tokens.

Tasks (GenSAR, section 3.3), each a ``Sample`` -> (input tokens, target tokens):

==============  ============================================  ==================================
task            input (compact style)                         target
==============  ============================================  ==================================
rec             ``<t_rec>`` H                                  ``<rec>`` collaborative ID
next_item       ``<t_rec>`` H                                  ``<rec>`` collaborative ID of an
                                                               item clicked in search
adhoc_logged    ``<t_search>`` ``<search>`` logged query        ``<search>`` semantic ID
search          ``<t_search>`` H ``<search>`` query words      ``<search>`` semantic ID
next_query      ``<t_query>`` H                                ``<query>`` query words
text2sem        ``<t_text2sem>`` item text                     ``<search>`` semantic ID
text2col        ``<t_text2col>`` item text                     ``<rec>`` collaborative ID
sem2text        ``<t_sem2text>`` semantic ID                   ``<text>`` item text
col2text        ``<t_col2text>`` collaborative ID              ``<text>`` item text
adhoc           ``<t_search>`` ``<search>`` pseudo-query       ``<search>`` semantic ID
==============  ============================================  ==================================

Every input and target ends with ``</s>``. The first target token names what is generated
(``<rec>``: a collaborative ID, ``<search>``: a semantic ID, ``<query>``/``<text>``: words), so a
semantic ID is always preceded by ``<search>`` and a collaborative ID by ``<rec>``, in targets
and in histories alike. The history H interleaves, in time order, rec interactions
(``<rec>`` + collaborative ID) and search sessions (``<search>`` + query words + the semantic
IDs of the clicked items). ``next_item`` (off by default; not in the paper) turns each training
search click into a recommendation sample as well, without its query: the model learns the
user's next item from every interaction, as a sequential recommender such as SASRec does from the
unified sequence. ``adhoc_logged`` (off by default; not in the paper) is history dropout for
search: each training search session once more as ad-hoc search, its query and clicked item
without the history, so the model learns to read the query rather than lean on the history.
When an input is longer than ``max_input_len`` the oldest history
events are dropped whole. Ad-hoc search is search without a history, so it shares the search
task marker and transfers directly to personalized search.

``prompt_style="paper"`` renders the same samples as English prompts in the spirit of the
paper's code ("The user has the following interaction history ... Please predict ..."), with
the same targets; it exists to measure what long prompts cost (see the README benchmark).

Pseudo-queries (the paper's doc2query step; no doc2query model exists offline), per item, in
this order, duplicates and empty ones skipped, at most ``pseudo_queries``:

1. the item's catalog query: its category-path words without the catalog root and stop words
   (``gensar.data.queries.build_item_queries``, the same rule that makes the semi-synthetic
   search log, so on such data it is exactly a query users issue);
2. then title n-grams: a window of 2-4 consecutive title words (stop words removed) at a start
   drawn from ``default_rng([seed, item_index])``, i.e. what a user who remembers part of a
   product name would type.

``pseudo_query_source`` says which kind leads. ``category``: the order above. ``title``: title windows
only (the catalog query only for an item without title words), for logs whose users type words of
the product name. ``auto`` (default): each item takes ``title`` with probability equal to the share of
the training split's logged queries that hold more words of the clicked item's title than of its
catalog query (``title_query_share``), so the pseudo-queries look like the log's own; on a
category-path log that share is 0 and the pseudo-queries are those of ``category``.

Task mix: each task's weight is the expected number of times each of its samples is seen per
epoch. Weight 1.5 means every sample once plus a seeded half of them again; 0 turns the task
off. The epoch size is fixed, so a cosine schedule knows its length in advance.

Code, one module per concept: ``task_config`` (task names, ``TaskConfig``), ``samples`` (pools,
pseudo-queries, ``TaskMix``), ``prompts`` (marker tokens, one renderer per prompt style),
``encoder`` (``SampleEncoder``); import each name from its module. This module is the overview.
"""

from __future__ import annotations

__all__: list[str] = []
