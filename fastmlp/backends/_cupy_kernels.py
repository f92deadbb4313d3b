"""The CUDA sources of the cupy backend's kernels (compiled by CuPy when the backend starts).

Kept apart from :mod:`.cupy_` the way the Numba kernels live in :mod:`._numba_kernels`; the test
suite also compiles them with the host C++ compiler and checks their arithmetic on the CPU.
"""

__all__ = ["ROW_SOFTMAX_SOURCE", "ELEMENTWISE"]

# One thread per row of logits (K is small): stable log-sum-exp, loss, first argmax and,
# when d2 is given, d2 = (softmax - onehot) / N. Per-row loss and hit are summed by CuPy.
ROW_SOFTMAX_SOURCE = r"""
template <typename T>
__global__ void row_softmax_xent(const T* S, const long long* labels, int N, int K,
                                 int want_grad, T* d2, double* row_loss, double* row_hit) {
    int n = blockDim.x * blockIdx.x + threadIdx.x;
    if (n >= N) return;
    const T* s = S + (long long)n * K;
    T top = s[0];
    int arg = 0;
    for (int k = 1; k < K; ++k) {
        if (s[k] > top) { top = s[k]; arg = k; }
    }
    double total = 0.0;
    for (int k = 0; k < K; ++k) total += exp((double)s[k] - (double)top);
    double log_z = log(total);
    long long label = labels[n];
    row_loss[n] = log_z - ((double)s[label] - (double)top);
    row_hit[n] = (arg == label) ? 1.0 : 0.0;
    if (want_grad) {
        double inv_n = 1.0 / N;
        for (int k = 0; k < K; ++k) {
            double p = exp((double)s[k] - (double)top - log_z);
            d2[(long long)n * K + k] = (T)(((k == label) ? p - 1.0 : p) * inv_n);
        }
    }
}
"""


#: element-wise kernels: name -> (inputs, outputs, body). Outputs are read and written in place.
ELEMENTWISE = {
    # s <- relu(s + b), b broadcast along rows; NaN stays NaN
    "bias_relu": ("T b", "T s", "T v = s + b; s = (v < (T)0) ? (T)0 : v;"),
    # g <- g ⊙ [a > 0]
    "relu_backward": ("T a", "T g", "g = (a > (T)0) ? g : (T)0;"),
    # s <- s + b, b broadcast along rows (the output layer's bias after its product)
    "add_bias": ("T b", "T s", "s = s + b;"),
    # v <- mu·v + lr·g; p <- p - v
    "momentum": ("T g, T lr, T mu", "T p, T v", "v = mu * v + lr * g; p -= v;"),
}
