/* fuzz_dicom.c: libFuzzer harness for the DICOM (the own parser of decode_dicom.c).
 * Each input is decoded twice, header only (probe) and whole; any result but a
 * crash, a leak or a sanitizer report is fine. Built and run by `make fuzz`. */
#include <string.h>

#include "../data/decode.h"

/* A lower pixel limit than the default keeps each run fast and within the RSS limit. */
#define FUZZ_MAX_PIXELS (1 << 22)

static void decode(const tg_decode_input *in, tg_tensor *out)
{
    tg_image_info info;
    memset(&info, 0, sizeof info);
    if (out) memset(out, 0, sizeof *out);
    if (tg_dicom_decode(in, &info, out) == TG_STATUS_OK && out) tg_tensor_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* NOTE: apply_window comes from the input's length, so both output paths are fuzzed. */
    tg_decode_input in = {.data = data, .size = size, .name = "fuzz.dicom", .max_pixels = FUZZ_MAX_PIXELS,
                          .apply_window = (int)(size & 1)};
    tg_tensor out;
    decode(&in, NULL);
    decode(&in, &out);
    return 0;
}
