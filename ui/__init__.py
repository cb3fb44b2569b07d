"""zwz.ui"""
