"""zwz.analytics.attention"""
