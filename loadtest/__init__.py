"""zwz.loadtest"""
