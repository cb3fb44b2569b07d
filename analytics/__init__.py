"""zwz.analytics"""
