"""zwz.analytics.zoom"""
