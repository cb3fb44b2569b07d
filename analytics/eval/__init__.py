"""zwz.analytics.eval"""
