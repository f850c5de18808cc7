/*
 * Matrix products for modarch's wasm engine, computed by the system's OpenBLAS on the wasm heap
 * itself. The caller passes the heap's ArrayBuffer and float offsets into it, so no value is
 * copied. One call computes a batch of products C_i = op(A_i) op(B_i), optionally adding a bias
 * and applying a ReLU. The addon also runs Adam's update in one pass over the heap, which needs
 * no BLAS but replaces about ten separate tfjs ops.
 */
#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>

/* The two CBLAS entry points used here, declared so that no particular cblas.h is needed. */
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
extern void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                        const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* OpenBLAS only; weak so that another BLAS links too. */
extern void openblas_set_num_threads(int threads) __attribute__((weak));

#define ARGUMENTS 15

static napi_value fail(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* Checks that `count` floats starting at `offset` lie inside a heap of `length` floats. */
static int inside(int64_t offset, int64_t count, int64_t length) {
  return offset >= 0 && count >= 0 && offset + count <= length;
}

/*
 * Reads the heap, the first argument of `name`, into `data` and its length in floats into
 * `length`. Returns 0 after throwing a JavaScript error when it is not a usable ArrayBuffer.
 */
static int read_heap(napi_env env, napi_value value, const char *name, float **data, int64_t *length) {
  void *bytes_data = NULL;
  size_t bytes = 0;
  bool is_buffer = false;
  napi_is_arraybuffer(env, value, &is_buffer);
  if (!is_buffer || napi_get_arraybuffer_info(env, value, &bytes_data, &bytes) != napi_ok || bytes_data == NULL) {
    char message[96];
    snprintf(message, sizeof message, "%s: the first argument must be the wasm heap's ArrayBuffer", name);
    napi_throw_error(env, NULL, message);
    return 0;
  }
  *data = (float *)bytes_data;
  *length = (int64_t)(bytes / sizeof(float));
  return 1;
}

/*
 * gemm(heap, batch, m, n, k, transA, transB, aOffset, aStride, bOffset, bStride, cOffset,
 *      biasOffset, biasLength, relu)
 * heap: ArrayBuffer of float32 values. Offsets and strides count floats. A stride of 0 reuses
 * one matrix for every product of the batch. op(A_i) is [m, k], op(B_i) is [k, n], C_i is
 * [m, n], all row-major. biasOffset < 0 means no bias; otherwise biasLength is n (one value per
 * column) or 1 (one value for all). relu != 0 clamps the result at 0.
 */
static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = ARGUMENTS;
  napi_value argv[ARGUMENTS];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != ARGUMENTS) {
    return fail(env, "gemm expects 15 arguments");
  }

  float *heap = NULL;
  int64_t length = 0;
  if (!read_heap(env, argv[0], "gemm", &heap, &length)) return NULL;

  int64_t v[ARGUMENTS - 1];
  for (int i = 1; i < ARGUMENTS; i++) {
    if (napi_get_value_int64(env, argv[i], &v[i - 1]) != napi_ok) return fail(env, "gemm: arguments 2-15 must be numbers");
  }
  int64_t batch = v[0], m = v[1], n = v[2], k = v[3];
  int trans_a = v[4] != 0, trans_b = v[5] != 0;
  int64_t a_offset = v[6], a_stride = v[7], b_offset = v[8], b_stride = v[9], c_offset = v[10];
  int64_t bias_offset = v[11], bias_length = v[12];
  int relu = v[13] != 0;

  if (batch < 1 || m < 1 || n < 1 || k < 1 || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) {
    return fail(env, "gemm: batch, m, n and k must be positive 32-bit sizes");
  }
  if (!inside(a_offset, (batch - 1) * a_stride + m * k, length) || !inside(b_offset, (batch - 1) * b_stride + k * n, length) ||
      !inside(c_offset, batch * m * n, length)) {
    return fail(env, "gemm: an operand lies outside the heap");
  }
  if (bias_offset >= 0 && ((bias_length != n && bias_length != 1) || !inside(bias_offset, bias_length, length))) {
    return fail(env, "gemm: the bias must hold n values or 1 value inside the heap");
  }

  int lda = trans_a ? (int)m : (int)k;
  int ldb = trans_b ? (int)k : (int)n;
  for (int64_t i = 0; i < batch; i++) {
    float *c = heap + c_offset + i * m * n;
    cblas_sgemm(ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS, (int)m, (int)n, (int)k, 1.0f,
                heap + a_offset + i * a_stride, lda, heap + b_offset + i * b_stride, ldb, 0.0f, c, (int)n);
    if (bias_offset >= 0 || relu) {
      const float *bias = bias_offset >= 0 ? heap + bias_offset : NULL;
      for (int64_t row = 0; row < m; row++) {
        float *out = c + row * n;
        for (int64_t column = 0; column < n; column++) {
          float value = out[column];
          if (bias) value += bias[bias_length == 1 ? 0 : column];
          if (relu && value < 0.0f) value = 0.0f;
          out[column] = value;
        }
      }
    }
  }
  return NULL;
}

#define ADAM_ARGUMENTS 16

/*
 * adam(heap, size, parameterOffset, gradientOffset, firstOffset, secondOffset, parameterOut,
 *      firstOut, secondOut, beta1, oneMinusBeta1, beta2, oneMinusBeta2, secondCorrection,
 *      epsilon, stepSize)
 * One Adam step over `size` floats, in float32 arithmetic in the order of the tfjs ops it
 * replaces: m' = m beta1 + g (1 - beta1), v' = v beta2 + g^2 (1 - beta2),
 * p' = p - m' stepSize / (sqrt(v' / secondCorrection) + epsilon), where stepSize is
 * learningRate / (1 - beta1^t). Outputs may not overlap the inputs.
 */
static napi_value adam(napi_env env, napi_callback_info info) {
  size_t argc = ADAM_ARGUMENTS;
  napi_value argv[ADAM_ARGUMENTS];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != ADAM_ARGUMENTS) {
    return fail(env, "adam expects 16 arguments");
  }
  float *heap = NULL;
  int64_t length = 0;
  if (!read_heap(env, argv[0], "adam", &heap, &length)) return NULL;

  int64_t offsets[8];
  for (int i = 0; i < 8; i++) {
    if (napi_get_value_int64(env, argv[i + 1], &offsets[i]) != napi_ok) return fail(env, "adam: arguments 2-9 must be numbers");
  }
  double scalars[7];
  for (int i = 0; i < 7; i++) {
    if (napi_get_value_double(env, argv[i + 9], &scalars[i]) != napi_ok) return fail(env, "adam: arguments 10-16 must be numbers");
  }

  int64_t size = offsets[0];
  if (size < 0) return fail(env, "adam: the size must not be negative");
  for (int i = 1; i < 8; i++) {
    if (!inside(offsets[i], size, length)) return fail(env, "adam: an operand lies outside the heap");
  }

  const float *parameters = heap + offsets[1], *gradient = heap + offsets[2];
  const float *first = heap + offsets[3], *second = heap + offsets[4];
  float *parameters_out = heap + offsets[5], *first_out = heap + offsets[6], *second_out = heap + offsets[7];
  const float beta1 = (float)scalars[0], one_minus_beta1 = (float)scalars[1];
  const float beta2 = (float)scalars[2], one_minus_beta2 = (float)scalars[3];
  const float second_correction = (float)scalars[4], epsilon = (float)scalars[5], step_size = (float)scalars[6];

  for (int64_t i = 0; i < size; i++) {
    const float g = gradient[i];
    const float m = first[i] * beta1 + g * one_minus_beta1;
    const float v = second[i] * beta2 + (g * g) * one_minus_beta2;
    const float denominator = sqrtf(v / second_correction) + epsilon;
    first_out[i] = m;
    second_out[i] = v;
    parameters_out[i] = parameters[i] - (m * step_size) / denominator;
  }
  return NULL;
}

/* setThreads(count): the number of threads OpenBLAS may use; returns false without OpenBLAS. */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t threads = 1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_get_value_int32(env, argv[0], &threads) != napi_ok || threads < 1) {
    return fail(env, "setThreads expects a positive whole number");
  }
  napi_value result;
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
  napi_get_boolean(env, openblas_set_num_threads != NULL, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value function;
  napi_create_function(env, "gemm", NAPI_AUTO_LENGTH, gemm, NULL, &function);
  napi_set_named_property(env, exports, "gemm", function);
  napi_create_function(env, "adam", NAPI_AUTO_LENGTH, adam, NULL, &function);
  napi_set_named_property(env, exports, "adam", function);
  napi_create_function(env, "setThreads", NAPI_AUTO_LENGTH, set_threads, NULL, &function);
  napi_set_named_property(env, exports, "setThreads", function);
  return exports;
}
