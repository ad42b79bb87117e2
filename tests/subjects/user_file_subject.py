"""A subject loaded by path (``tests/subjects/user_file_subject.py:Wrapper.causal_conv``), as a user
would point the suite at a file outside any package; its dotted attribute is a static method."""
import numpy as np


class Wrapper:
    @staticmethod
    def causal_conv(u, K):
        u = np.asarray(u, dtype=np.float64)
        return np.convolve(u, np.asarray(K, dtype=np.float64))[: u.shape[0]]


not_callable = 3
