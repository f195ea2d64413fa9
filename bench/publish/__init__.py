"""Stage 5 of the flow: tables, leaderboard, paired comparisons, the results bundle and its verification, the page
and the figures, all regenerated from logged runs."""
