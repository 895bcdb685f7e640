/* test_json.c: the strict JSON reader (valid and invalid documents, with the line and
 * column of errors), the string writer round trip, XXH64 vectors and the manifest
 * reader's errors. Built plain and with ASan+UBSan by make test. */
#include <string.h>

#include "../../csrc/core/status.h"
#include "../../csrc/data/dataset.h"
#include "../../csrc/data/hash.h"
#include "../../csrc/data/json.h"
#include "check.h"

static tg_status parse(const char *text, tg_json_value *out) { return tg_json_parse(text, strlen(text), "t.json", out); }

/* Parses an invalid document; checks the status and that the message has `expect`. */
static void check_invalid(const char *text, const char *expect)
{
    tg_json_value v;
    tg_status s = parse(text, &v);
    CHECK(s == TG_STATUS_DATASET);
    int found = strstr(tg_error_message(), expect) != NULL;
    if (!found) fprintf(stderr, "  for %s: message \"%s\" lacks \"%s\"\n", text, tg_error_message(), expect);
    CHECK(found);
    CHECK(v.kind == TG_JSON_KIND_NULL && v.items == NULL && v.members == NULL);
}

static void test_valid(void)
{
    tg_json_value v;
    CHECK_OK(parse(" {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"b\": {}, \"c\": []}\n", &v));
    CHECK(v.kind == TG_JSON_KIND_OBJECT && v.count == 3);
    const tg_json_value *a = tg_json_get(&v, "a");
    CHECK(a && a->kind == TG_JSON_KIND_ARRAY && a->count == 6);
    CHECK(a->items[0].is_integer && a->items[0].integer == 1);
    CHECK(!a->items[1].is_integer && a->items[1].number == -2500.0);
    CHECK(a->items[2].kind == TG_JSON_KIND_BOOL && a->items[2].boolean == 1);
    CHECK(a->items[3].kind == TG_JSON_KIND_BOOL && a->items[3].boolean == 0);
    CHECK(a->items[4].kind == TG_JSON_KIND_NULL);
    CHECK(strcmp(a->items[5].string, "x") == 0);
    CHECK(a->items[5].line == 1 && a->items[5].column == 39);
    CHECK(tg_json_get(&v, "b")->kind == TG_JSON_KIND_OBJECT && tg_json_get(&v, "missing") == NULL);
    tg_json_free(&v);

    CHECK_OK(parse("\"\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\xc3\xa9\"", &v));
    CHECK(strcmp(v.string, "\xc3\xa9\xf0\x9f\x98\x80\n\"\\/\xc3\xa9") == 0);
    tg_json_free(&v);

    CHECK_OK(parse("[9223372036854775807, 9223372036854775808, 0, -0, 1E2]", &v));
    CHECK(v.items[0].is_integer && v.items[0].integer == INT64_MAX);
    CHECK(!v.items[1].is_integer && v.items[1].number == 9223372036854775808.0);
    CHECK(v.items[2].is_integer && v.items[3].is_integer && !v.items[4].is_integer && v.items[4].number == 100);
    tg_json_free(&v);

    CHECK_OK(parse("\xef\xbb\xbf{\"k\":\n\n  [1]}", &v));
    CHECK(tg_json_get(&v, "k")->line == 3 && tg_json_get(&v, "k")->column == 3);
    tg_json_free(&v);

    char deep[2 * TG_JSON_MAX_DEPTH + 1];
    memset(deep, '[', TG_JSON_MAX_DEPTH);
    memset(deep + TG_JSON_MAX_DEPTH, ']', TG_JSON_MAX_DEPTH);
    deep[2 * TG_JSON_MAX_DEPTH] = '\0';
    CHECK_OK(parse(deep, &v));
    tg_json_free(&v);
}

static void test_invalid(void)
{
    check_invalid("", "t.json:1:1: expected a value");
    check_invalid("[1, 2,]", "t.json:1:7: trailing comma");
    check_invalid("{\"a\": 1,}", "trailing comma");
    check_invalid("{\"a\": 1\n \"b\": 2}", "t.json:2:2: expected ',' or '}'");
    check_invalid("[01]", "leading zeros");
    check_invalid("[1.]", "decimal point");
    check_invalid("[1e]", "exponent");
    check_invalid("[-]", "a digit");
    check_invalid("[NaN]", "expected a value");
    check_invalid("[1e999]", "out of the range");
    check_invalid("{a: 1}", "t.json:1:2: expected a key in double quotes");
    check_invalid("{\"a\" 1}", "expected ':'");
    check_invalid("{\"a\": 1, \"a\": 2}", "t.json:1:10: duplicate key \"a\"");
    check_invalid("[\"abc", "not closed");
    check_invalid("[\"a\tb\"]", "control character 0x09");
    check_invalid("[\"\\x\"]", "unknown escape");
    check_invalid("[\"\\u12\"]", "four hex digits");
    check_invalid("[\"\\ud800\"]", "not followed by a low surrogate");
    check_invalid("[\"\\udc00\"]", "lone low surrogate");
    check_invalid("[\"\xff\"]", "invalid UTF-8");
    check_invalid("[\"\xc0\xaf\"]", "invalid UTF-8");          /* overlong '/' */
    check_invalid("[\"\xed\xa0\x80\"]", "invalid UTF-8");      /* an encoded surrogate */
    check_invalid("[tru]", "expected 'true'");
    check_invalid("// c\n[1]", "expected a value");
    check_invalid("[1] [2]", "after the document's value");
    check_invalid("[1, [2, {\"x\": ]}]", "t.json:1:15: expected a value");
    char deep[2 * TG_JSON_MAX_DEPTH + 3];
    memset(deep, '[', TG_JSON_MAX_DEPTH + 1);
    memset(deep + TG_JSON_MAX_DEPTH + 1, ']', TG_JSON_MAX_DEPTH + 1);
    deep[2 * TG_JSON_MAX_DEPTH + 2] = '\0';
    check_invalid(deep, "nesting deeper");
    tg_json_value v;
    CHECK(tg_json_parse_file("/nonexistent/x.json", &v) == TG_STATUS_IO);
}

static void test_writer(void)
{
    tg_text t = {0};
    tg_json_append_string(&t, "a\"b\\c\n\x01 \xc3\xa9");
    CHECK(strcmp(t.data, "\"a\\\"b\\\\c\\n\\u0001 \xc3\xa9\"") == 0);
    tg_json_value v;
    CHECK_OK(tg_json_parse(t.data, t.length, "w", &v));
    CHECK(strcmp(v.string, "a\"b\\c\n\x01 \xc3\xa9") == 0);
    tg_json_free(&v);
    tg_text_free(&t);
    tg_json_append_number(&t, 0.1);
    tg_text_append(&t, " ", 1);
    tg_json_append_number(&t, 1.0 / 3.0);
    CHECK(strcmp(t.data, "0.1 0.33333333333333331") == 0);
    tg_text_free(&t);
    CHECK(tg_utf8_valid("\xf0\x9f\x98\x80", 4) && !tg_utf8_valid("\xf0\x9f\x98", 3));
}

static void test_xxh64(void)
{
    CHECK(tg_xxh64("", 0) == 0xef46db3751d8e999ull);
    CHECK(tg_xxh64("abc", 3) == 0x44bc2cf5ad770999ull);
    unsigned char bytes[1280];
    for (int i = 0; i < 1280; i++) bytes[i] = (unsigned char)i;
    CHECK(tg_xxh64(bytes, sizeof bytes) == 0xafc184ad7938a354ull);
    tg_xxh64_state s;
    tg_xxh64_init(&s);
    for (int i = 0; i < 1280; i += 7) tg_xxh64_update(&s, bytes + i, i + 7 <= 1280 ? 7 : 1280 - i);
    CHECK(tg_xxh64_digest(&s) == 0xafc184ad7938a354ull);
}

static void test_manifest_errors(void)
{
    const char *good = "{\"version\": 1, \"root\": \"/d\", \"task\": \"classification\", \"layout\": \"csv\",\n"
                       " \"classes\": [\"a\", \"b\"], \"split\": {\"seed\": 3, \"ratios\": [0.7, 0.15, 0.15], "
                       "\"from_folders\": false},\n \"samples\": [\n"
                       "  {\"path\": \"a/1.png\", \"split\": \"train\", \"content_hash\": \"00000000000000ff\", "
                       "\"size_bytes\": 10, \"label\": 1}],\n \"notes\": [{\"path\": \"x\", \"reason\": \"y\"}]}";
    tg_manifest m;
    CHECK_OK(tg_manifest_parse(good, strlen(good), "m.json", &m));
    CHECK(m.n_samples == 1 && m.samples[0].label == 1 && m.samples[0].content_hash == 0xff && m.n_notes == 1);
    CHECK(m.split_seed == 3 && m.samples[0].split == TG_SPLIT_TRAIN);
    tg_text text;
    CHECK_OK(tg_manifest_to_json(&m, &text));
    tg_manifest again;
    CHECK_OK(tg_manifest_parse(text.data, text.length, "again", &again));
    CHECK(again.n_samples == 1 && strcmp(again.samples[0].path, "a/1.png") == 0 && again.n_classes == 2);
    tg_manifest_free(&again);
    tg_text_free(&text);
    tg_manifest_free(&m);

    const char *bad_label = "{\"version\": 1, \"root\": \"/d\", \"task\": \"classification\", \"layout\": \"csv\",\n"
                            " \"classes\": [\"a\"], \"split\": {\"seed\": 0, \"ratios\": [1, 0, 0], "
                            "\"from_folders\": false},\n \"samples\": [\n"
                            "  {\"path\": \"a/1.png\", \"split\": \"train\", \"content_hash\": \"00000000000000ff\", "
                            "\"size_bytes\": 10, \"label\": 4}], \"notes\": []}";
    CHECK(tg_manifest_parse(bad_label, strlen(bad_label), "m.json", &m) == TG_STATUS_DATASET);
    CHECK(strstr(tg_error_message(), "m.json:4:") && strstr(tg_error_message(), "samples[0]") &&
          strstr(tg_error_message(), "4 is out of the range [0, 0]"));
    const char *bad_version = "{\"version\": 7}";
    CHECK(tg_manifest_parse(bad_version, strlen(bad_version), "m.json", &m) == TG_STATUS_DATASET);
    CHECK(strstr(tg_error_message(), "m.json:1:13: version: manifest version 7") != NULL);
    const char *bad_split = "{\"version\": 1, \"root\": \"/d\", \"task\": \"detection\", \"layout\": \"coco\", "
                            "\"classes\": [], \"split\": {\"seed\": 0, \"ratios\": [0.5, 0.1, 0.1], \"from_folders\": "
                            "false}, \"samples\": [], \"notes\": []}";
    CHECK(tg_manifest_parse(bad_split, strlen(bad_split), "m.json", &m) == TG_STATUS_DATASET);
    CHECK(strstr(tg_error_message(), "sum to 0.7") != NULL);
}

int main(void)
{
    test_valid();
    test_invalid();
    test_writer();
    test_xxh64();
    test_manifest_errors();
    return check_report("test_json");
}
