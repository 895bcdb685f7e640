/* fuzz_jpeg.c: libFuzzer harness for the JPEG (libjpeg-turbo behind decode_jpeg.c).
 * Each input is decoded three times, header only (probe), whole, and a window of it
 * (tg_jpeg_decode_window, the loader's path) picked from the input's last byte; any
 * result but a crash, a leak or a sanitizer report is fine. Built and run by `make fuzz`. */
#include <stdlib.h>
#include <string.h>

#include "../data/decode.h"

/* A lower pixel limit than the default keeps each run fast and within the RSS limit. */
#define FUZZ_MAX_PIXELS (1 << 22)

static void decode(const tg_decode_input *in, tg_tensor *out)
{
    tg_image_info info;
    memset(&info, 0, sizeof info);
    if (out) memset(out, 0, sizeof *out);
    if (tg_jpeg_decode(in, &info, out) == TG_STATUS_OK && out) tg_tensor_free(out);
}

/* A window from a seed byte: a quarter of the image in one of 16 places, or all of it. */
static tg_status choose_window(void *ctx, int64_t channels, int64_t height, int64_t width, int64_t window[4])
{
    (void)channels;
    unsigned seed = *(const unsigned *)ctx;
    int64_t cx = (int64_t)(seed & 3), cy = (int64_t)((seed >> 2) & 3);
    window[0] = width * cx / 4, window[1] = height * cy / 4;
    window[2] = seed & 16 ? width : window[0] + (width + 3) / 4;
    window[3] = seed & 16 ? height : window[1] + (height + 3) / 4;
    if (window[2] > width) window[2] = width;
    if (window[3] > height) window[3] = height;
    return TG_STATUS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_decode_input in = {.data = data, .size = size, .name = "fuzz.jpeg", .max_pixels = FUZZ_MAX_PIXELS};
    tg_tensor out;
    decode(&in, NULL);
    decode(&in, &out);
    unsigned seed = size ? data[size - 1] : 0;
    tg_image_window window;
    memset(&window, 0, sizeof window);
    tg_jpeg_decode_window(&in, choose_window, &seed, &window);
    free(window.data);
    return 0;
}
