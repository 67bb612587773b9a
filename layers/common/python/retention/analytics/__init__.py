"""Analytics: rule and segment statistics, counters, funnels."""
