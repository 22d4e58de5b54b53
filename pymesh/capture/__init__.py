"""pymesh.capture"""
