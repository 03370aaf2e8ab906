/*
 * test_segment.c - the shared-memory object (segment.c): the layout
 * signature, segment names, the geometry planned for new segments, and the
 * validation of an existing segment's header on attach.
 *
 * Corruption tests change one immutable header field of a freshly created
 * segment through the creator's mapping, then attach again: validation must
 * answer SHMC_ECORRUPT (never attach, never crash).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "handle.h"
#include "unitutil.h"

#define SEGMENT_BYTES (4u << 20)
#define CHUNK_BYTES (64u << 10)
#define MIN_CHUNK (64u << 10)

static int setup(void **state)
{
	static const struct uu_params p = {
		.size_bytes = SEGMENT_BYTES,
		.chunk_bytes = CHUNK_BYTES,
		.max_procs = 16,
		.max_threads = 64,
	};

	return uu_setup(state, &p);
}

static int setup_name_only(void **state)
{
	struct uu_fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	uu_segname(f->name, sizeof f->name, (const char *)*state);
	(void)shmc_unlink(f->name);
	*state = f;
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)
#define TEST_NAMED(fn)                                                                             \
	cmocka_unit_test_prestate_setup_teardown(fn, setup_name_only, uu_teardown, (void *)#fn)

/* ------------------------------------------------------ layout signature */

static void test_segment_layout_signature_stable_across_calls(void **state)
{
	(void)state;
	uint64_t a = shmc__layout_signature();

	for (int i = 0; i < 100; i++)
		assert_true(shmc__layout_signature() == a);
}

static void test_segment_layout_signature_nonzero(void **state)
{
	(void)state;
	assert_true(shmc__layout_signature() != 0);
}

static void test_segment_layout_signature_stored_in_header(void **state)
{
	struct uu_fixture *f = fixture_of(state);

	assert_true(f->c->hdr->magic == SHMC__MAGIC);
	assert_true(f->c->hdr->layout_sig == shmc__layout_signature());
}

/* ----------------------------------------------------------------- names */

static void test_segment_path_valid_names_accepted(void **state)
{
	static const char *const names[] = {
		"a", "Z", "0", ".", "_", "-", "abcXYZ019._-", "u.test_name.123",
	};
	char path[SHMC__NAME_MAX + 8], expect[SHMC__NAME_MAX + 8];

	(void)state;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		memset(path, 0, sizeof path);
		assert_int_equal(shmc__segment_path(names[i], path, sizeof path), 0);
		snprintf(expect, sizeof expect, "/shmc.%s", names[i]);
		assert_string_equal(path, expect);
	}
}

static void test_segment_path_every_allowed_byte_accepted(void **state)
{
	char name[2] = {0, 0}, path[SHMC__NAME_MAX + 8];

	(void)state;
	for (int ch = 1; ch < 256; ch++) {
		int allowed = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
		int rc;

		name[0] = (char)ch;
		rc = shmc__segment_path(name, path, sizeof path);
		if (allowed && rc != 0)
			fail_msg("byte 0x%02x rejected", ch);
		if (!allowed && rc != SHMC_EINVAL)
			fail_msg("byte 0x%02x accepted (rc %d)", ch, rc);
	}
}

static void test_segment_path_200_byte_name_accepted(void **state)
{
	char name[SHMC__NAME_MAX + 1], path[SHMC__NAME_MAX + 8];

	(void)state;
	memset(name, 'n', SHMC__NAME_MAX);
	name[SHMC__NAME_MAX] = '\0';
	assert_int_equal(shmc__segment_path(name, path, sizeof path), 0);
	assert_int_equal(strlen(path), SHMC__NAME_MAX + 6);
	assert_memory_equal(path, "/shmc.", 6);
}

static void test_segment_path_201_byte_name_rejected(void **state)
{
	char name[SHMC__NAME_MAX + 2], path[SHMC__NAME_MAX + 16];

	(void)state;
	memset(name, 'n', SHMC__NAME_MAX + 1);
	name[SHMC__NAME_MAX + 1] = '\0';
	assert_int_equal(shmc__segment_path(name, path, sizeof path), SHMC_EINVAL);
}

static void test_segment_path_bad_names_rejected(void **state)
{
	static const char *const names[] = {
		"", "a/b", "/a", "a b", "a\n", "a:b", "a*", "caf\xc3\xa9", "a\\b", "a%b",
	};
	char path[SHMC__NAME_MAX + 8];

	(void)state;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (shmc__segment_path(names[i], path, sizeof path) != SHMC_EINVAL)
			fail_msg("name \"%s\" accepted", names[i]);
	assert_int_equal(shmc__segment_path(NULL, path, sizeof path), SHMC_EINVAL);
}

static void test_segment_path_small_buffer_rejected(void **state)
{
	char path[8];

	(void)state;
	/* "/shmc.abc" needs 10 bytes with its terminator. */
	assert_int_equal(shmc__segment_path("abc", path, 9), SHMC_EINVAL);
	assert_int_equal(shmc__segment_path("a", path, sizeof path), 0);
	assert_string_equal(path, "/shmc.a");
}

/* -------------------------------------------------------------- geometry */

struct geo_case {
	size_t size_bytes, chunk_bytes, item_bytes; /* chunk 0 = automatic */
};

static const struct geo_case geo_cases[] = {
	{1u << 20, 0, 0},
	{1u << 20, 64u << 10, 12},
	{2u << 20, 64u << 10, 1},
	{4u << 20, 0, 0},
	{4u << 20, 64u << 10, 32},
	{6u << 20, 128u << 10, 500},
	{16u << 20, 256u << 10, 1000},
	{32u << 20, 1u << 20, 4096},
	{(64u << 20) + 12345, 0, 0},
	{100u << 20, 0, 77},
};
#define NGEO (sizeof geo_cases / sizeof geo_cases[0])

/* Creates the i-th case under the fixture's name plus ".i". */
static shmc_cache *geo_open(void **state, size_t i, char *name, size_t cap)
{
	struct uu_params p = {
		.size_bytes = geo_cases[i].size_bytes,
		.chunk_bytes = geo_cases[i].chunk_bytes,
		.item_bytes = geo_cases[i].item_bytes,
	};
	shmc_cache *c = NULL;
	int rc;

	snprintf(name, cap, "%s.%zu", fixture_of(state)->name, i);
	rc = uu_create(name, &p, &c);
	if (rc != 0)
		fail_msg("creating case %zu (%zu bytes, chunk %zu, item %zu): %s (%s)", i,
			 geo_cases[i].size_bytes, geo_cases[i].chunk_bytes, geo_cases[i].item_bytes,
			 shmc_errname(rc), shmc_errmsg(NULL));
	return c;
}

static void geo_close(shmc_cache *c, const char *name)
{
	shmc_close(c);
	(void)shmc_unlink(name);
}

static void test_segment_geometry_chunk_bytes_power_of_two(void **state)
{
	char name[TU_NAME_MAX + 32];

	for (size_t i = 0; i < NGEO; i++) {
		shmc_cache *c = geo_open(state, i, name, sizeof name);
		uint32_t chunk = c->geo.chunk_bytes;

		assert_true(chunk >= MIN_CHUNK);
		assert_true((chunk & (chunk - 1)) == 0);
		assert_true((1u << c->geo.chunk_shift) == chunk);
		assert_true(c->hdr->chunk_bytes == chunk);
		if (geo_cases[i].chunk_bytes != 0)
			assert_true(chunk == geo_cases[i].chunk_bytes);
		geo_close(c, name);
	}
}

static void test_segment_geometry_data_area_inside_segment(void **state)
{
	char name[TU_NAME_MAX + 32];

	for (size_t i = 0; i < NGEO; i++) {
		shmc_cache *c = geo_open(state, i, name, sizeof name);
		const struct shmc__header *h = c->hdr;
		uint64_t chunks_end =
			h->off_chunks + (uint64_t)h->nchunks * sizeof(struct shmc__chunk);

		assert_true(c->geo.segment_bytes == geo_cases[i].size_bytes);
		assert_true(c->geo.data_bytes == (uint64_t)h->nchunks * h->chunk_bytes);
		assert_true(h->off_data % 4096 == 0);
		assert_true(h->off_data >= chunks_end);
		assert_true(h->off_data + c->geo.data_bytes <= c->geo.segment_bytes);
		assert_true(h->off_procs >= SHMC__HEADER_BYTES);
		assert_true(h->off_threads >=
			    h->off_procs + h->max_procs * sizeof(struct shmc__proc_slot));
		assert_true(h->off_buckets >=
			    h->off_threads + h->max_threads * sizeof(struct shmc__thread_slot));
		assert_true(h->off_chunks >= h->off_buckets + (uint64_t)h->nbuckets * 64);
		assert_ptr_equal(c->data, c->base + h->off_data);
		geo_close(c, name);
	}
}

/* The index has about data_bytes / (item + 12) / 0.88 slots (7 a bucket),
 * never fewer than SHMC__MAX_PROBE buckets. */
static void test_segment_geometry_index_sized_from_item_size(void **state)
{
	char name[TU_NAME_MAX + 32];

	for (size_t i = 0; i < NGEO; i++) {
		shmc_cache *c = geo_open(state, i, name, sizeof name);
		size_t item = geo_cases[i].item_bytes ? geo_cases[i].item_bytes : 128;
		double expect = (double)c->geo.data_bytes / (double)(item + SHMC__ITEM_HDR) /
				SHMC__INDEX_LOAD;
		double slots = (double)c->geo.nbuckets * SHMC__BUCKET_SLOTS;

		if (expect < SHMC__MAX_PROBE * SHMC__BUCKET_SLOTS)
			expect = SHMC__MAX_PROBE * SHMC__BUCKET_SLOTS;
		if (slots < expect * 0.99 - 2 * SHMC__BUCKET_SLOTS ||
		    slots > expect * 1.01 + 2 * SHMC__BUCKET_SLOTS)
			fail_msg("case %zu: %.0f slots, expected about %.0f", i, slots, expect);
		geo_close(c, name);
	}
}

static void test_segment_auto_chunk_4mib_segment_has_64_chunks(void **state)
{
	struct uu_params p = {.size_bytes = 4u << 20};
	char name[TU_NAME_MAX + 32];
	shmc_cache *c = NULL;

	snprintf(name, sizeof name, "%s", fixture_of(state)->name);
	assert_int_equal(uu_create(name, &p, &c), 0);
	if (!(c->geo.nchunks >= 64 || c->geo.chunk_bytes == MIN_CHUNK))
		fail_msg("4 MiB: %u chunks of %u bytes", c->geo.nchunks, c->geo.chunk_bytes);
	assert_true(c->geo.chunk_bytes < SHMC_DEFAULT_CHUNK);
	geo_close(c, name);
}

/* shmcache.h, shmc_opts_set_chunk_size: "default 1 MiB, or smaller so that
 * the segment has at least 64 chunks". Checked over a range of sizes. */
static void test_segment_auto_chunk_any_size_at_least_64_chunks(void **state)
{
	static const size_t sizes[] = {
		1u << 20, 4u << 20, 8u << 20, 16u << 20, 64u << 20, 128u << 20,
	};
	char name[TU_NAME_MAX + 32], bad[512] = "";
	size_t used = 0;

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		struct uu_params p = {.size_bytes = sizes[i]};
		shmc_cache *c = NULL;

		snprintf(name, sizeof name, "%s.%zu", fixture_of(state)->name, i);
		assert_int_equal(uu_create(name, &p, &c), 0);
		if (!(c->geo.nchunks >= 64 || c->geo.chunk_bytes == MIN_CHUNK) && used < sizeof bad)
			used += (size_t)snprintf(bad + used, sizeof bad - used,
						 " %zu MiB: %u chunks of %u KiB;", sizes[i] >> 20,
						 c->geo.nchunks, c->geo.chunk_bytes >> 10);
		geo_close(c, name);
	}
	if (bad[0] != '\0')
		fail_msg("fewer than 64 chunks with chunks above 64 KiB:%s", bad);
}

/* ------------------------------------------------------------ validation */

/* Attach a second time: the result of shmc_open (a handle is closed). */
static int reattach(void **state)
{
	shmc_cache *c2 = NULL;
	int rc = shmc_open(fixture_of(state)->name, NULL, 0, &c2);

	if (rc == 0)
		shmc_close(c2);
	return rc;
}

/* Set header field `field` to each of the values, attach, restore. */
#define EXPECT_CORRUPT_EACH(state, field, ...)                                                     \
	do {                                                                                       \
		struct shmc__header *h_ = fixture_of(state)->c->hdr;                               \
		const __typeof__(h_->field) saved_ = h_->field;                                    \
		const __typeof__(h_->field) bad_[] = {__VA_ARGS__};                                \
		assert_int_equal(reattach(state), 0);                                              \
		for (size_t i_ = 0; i_ < sizeof bad_ / sizeof bad_[0]; i_++) {                     \
			int rc_;                                                                   \
			h_->field = bad_[i_];                                                      \
			rc_ = reattach(state);                                                     \
			h_->field = saved_;                                                        \
			if (rc_ != SHMC_ECORRUPT)                                                  \
				fail_msg(#field " = %llu (was %llu): got %s, not "                 \
						"SHMC_ECORRUPT",                                   \
					 (unsigned long long)bad_[i_], (unsigned long long)saved_, \
					 shmc_errname(rc_));                                       \
		}                                                                                  \
		assert_int_equal(reattach(state), 0);                                              \
	} while (0)

static void test_segment_validate_bad_nchunks_ecorrupt(void **state)
{
	uint32_t n = fixture_of(state)->c->hdr->nchunks;

	EXPECT_CORRUPT_EACH(state, nchunks, 0, n + 1, n * 2, n + 64, UINT32_MAX);
}

static void test_segment_validate_bad_nbuckets_ecorrupt(void **state)
{
	uint32_t n = fixture_of(state)->c->hdr->nbuckets;

	EXPECT_CORRUPT_EACH(state, nbuckets, 0, SHMC__MAX_PROBE - 1, n - 1, n + 1, n * 2,
			    UINT32_MAX);
}

static void test_segment_validate_bad_chunk_bytes_ecorrupt(void **state)
{
	uint32_t n = fixture_of(state)->c->hdr->chunk_bytes;

	EXPECT_CORRUPT_EACH(state, chunk_bytes, 0, 1, n - 1, n + 1, n + 4096, n * 2, 32u << 10,
			    128u << 20, UINT32_MAX);
}

static void test_segment_validate_bad_off_data_ecorrupt(void **state)
{
	uint64_t off = fixture_of(state)->c->hdr->off_data;

	EXPECT_CORRUPT_EACH(state, off_data, 0, off - 4096, off - 64, off + 1, off + 64, off + 4096,
			    (uint64_t)SEGMENT_BYTES, UINT64_MAX);
}

static void test_segment_validate_bad_max_threads_ecorrupt(void **state)
{
	uint32_t n = fixture_of(state)->c->hdr->max_threads;

	EXPECT_CORRUPT_EACH(state, max_threads, 0, n - 1, n + 1, n * 2, 65536, UINT32_MAX);
}

static void test_segment_validate_bad_segment_bytes_ecorrupt(void **state)
{
	uint64_t n = fixture_of(state)->c->hdr->segment_bytes;

	EXPECT_CORRUPT_EACH(state, segment_bytes, 0, n - 4096, n - 1, n + 1, n + 4096, n * 2,
			    UINT64_MAX);
}

static void test_segment_validate_bad_max_procs_ecorrupt(void **state)
{
	uint32_t n = fixture_of(state)->c->hdr->max_procs;

	EXPECT_CORRUPT_EACH(state, max_procs, 0, n - 1, n + 1, 65536, UINT32_MAX);
}

static void test_segment_validate_bad_region_offsets_ecorrupt(void **state)
{
	uint64_t p = fixture_of(state)->c->hdr->off_procs;
	uint64_t t = fixture_of(state)->c->hdr->off_threads;
	uint64_t b = fixture_of(state)->c->hdr->off_buckets;
	uint64_t k = fixture_of(state)->c->hdr->off_chunks;

	EXPECT_CORRUPT_EACH(state, off_procs, 0, p + 64, UINT64_MAX);
	EXPECT_CORRUPT_EACH(state, off_threads, 0, t - 64, t + 64, UINT64_MAX);
	EXPECT_CORRUPT_EACH(state, off_buckets, 0, b - 64, b + 64, UINT64_MAX);
	EXPECT_CORRUPT_EACH(state, off_chunks, 0, k - 64, k + 64, UINT64_MAX);
}

static void test_segment_validate_bad_max_key_bytes_ecorrupt(void **state)
{
	EXPECT_CORRUPT_EACH(state, max_key_bytes, 0, SHMC_KEY_MAX + 1, UINT32_MAX);
}

static void test_segment_validate_garbage_state_ecorrupt(void **state)
{
	EXPECT_CORRUPT_EACH(state, state, 0, 3, 0x7f, 0xdeadbeef, UINT32_MAX);
}

/* INIT with nobody holding the creator's lock: the creator died mid-way. */
static void test_segment_validate_state_init_without_creator_ecorrupt(void **state)
{
	uint64_t t0 = tu_now_ms();

	EXPECT_CORRUPT_EACH(state, state, SHMC__SEG_INIT);
	assert_true(tu_now_ms() - t0 < 5000); /* decided before the open timeout */
}

static void test_segment_validate_bad_magic_eversion(void **state)
{
	struct shmc__header *h = fixture_of(state)->c->hdr;
	uint64_t saved = h->magic;
	int rc;

	h->magic ^= 1;
	rc = reattach(state);
	h->magic = saved;
	assert_int_equal(rc, SHMC_EVERSION);
}

static void test_segment_validate_other_layout_signature_eversion(void **state)
{
	struct shmc__header *h = fixture_of(state)->c->hdr;
	uint64_t saved = h->layout_sig;
	int rc;

	h->layout_sig ^= 0x100;
	rc = reattach(state);
	h->layout_sig = saved;
	assert_int_equal(rc, SHMC_EVERSION);
}

/* A corruption that still looks like a consistent geometry (chunk_bytes
 * halved: still a power of two, the region offsets do not depend on it)
 * cannot be told apart by validation; every index entry is still bounds
 * checked against the geometry the handle copied, so reads through a handle
 * attached to the scribbled header answer, never crash. */
/* A scribble that keeps the geometry plausible (half the chunk size) is
 * caught by the checksum over the immutable header fields. */
static void test_segment_halved_chunk_bytes_ecorrupt(void **state)
{
	struct uu_fixture *f = fixture_of(state);
	shmc_cache *c2 = NULL;

	uint32_t saved = f->c->hdr->chunk_bytes;
	f->c->hdr->chunk_bytes = saved / 2;
	int rc = shmc_open(f->name, NULL, 0, &c2);
	f->c->hdr->chunk_bytes = saved;
	assert_int_equal(rc, SHMC_ECORRUPT);
	assert_null(c2);
	/* Restored, it attaches again. */
	assert_int_equal(shmc_open(f->name, NULL, 0, &c2), 0);
	shmc_close(c2);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_segment_layout_signature_stable_across_calls),
		TEST(test_segment_layout_signature_nonzero),
		TEST(test_segment_layout_signature_stored_in_header),
		TEST(test_segment_path_valid_names_accepted),
		TEST(test_segment_path_every_allowed_byte_accepted),
		TEST(test_segment_path_200_byte_name_accepted),
		TEST(test_segment_path_201_byte_name_rejected),
		TEST(test_segment_path_bad_names_rejected),
		TEST(test_segment_path_small_buffer_rejected),
		TEST_NAMED(test_segment_geometry_chunk_bytes_power_of_two),
		TEST_NAMED(test_segment_geometry_data_area_inside_segment),
		TEST_NAMED(test_segment_geometry_index_sized_from_item_size),
		TEST_NAMED(test_segment_auto_chunk_4mib_segment_has_64_chunks),
		TEST_NAMED(test_segment_auto_chunk_any_size_at_least_64_chunks),
		TEST(test_segment_validate_bad_nchunks_ecorrupt),
		TEST(test_segment_validate_bad_nbuckets_ecorrupt),
		TEST(test_segment_validate_bad_chunk_bytes_ecorrupt),
		TEST(test_segment_validate_bad_off_data_ecorrupt),
		TEST(test_segment_validate_bad_max_threads_ecorrupt),
		TEST(test_segment_validate_bad_segment_bytes_ecorrupt),
		TEST(test_segment_validate_bad_max_procs_ecorrupt),
		TEST(test_segment_validate_bad_region_offsets_ecorrupt),
		TEST(test_segment_validate_bad_max_key_bytes_ecorrupt),
		TEST(test_segment_validate_garbage_state_ecorrupt),
		TEST(test_segment_validate_state_init_without_creator_ecorrupt),
		TEST(test_segment_validate_bad_magic_eversion),
		TEST(test_segment_validate_other_layout_signature_eversion),
		TEST(test_segment_halved_chunk_bytes_ecorrupt),
	};

	(void)argc;
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
