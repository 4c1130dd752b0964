"""qstar.critics"""
