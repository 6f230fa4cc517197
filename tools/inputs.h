/*
 * inputs.h - the photos a command works on, and where each one's output goes.
 *
 * Inputs are files and folders; a folder stands for its photos: the .png, .jpg and .jpeg files
 * in it (any case), sorted by name, not recursive, hidden files skipped. With -o DIR every photo
 * gets DIR/NAME.EXT (its base name, the extension replaced). Before anything runs, two photos
 * that would share an output, or an output that is one of the inputs, are refused. Used by
 * rmbg and segment (cmd_run.c) and by bench --folder.
 */
#ifndef DL_INPUTS_H
#define DL_INPUTS_H

#include "pipeline.h"

int input_is_dir(const char *path);                 /* an existing folder ("-" is not) */
int input_same_file(const char *a, const char *b);  /* the same name or the same file */

/* The photos of folder dir, as paths "dir/NAME" sorted by name: *paths (malloc'ed, each path
 * too); returns their count, or -1 (errno set) when the folder cannot be read. */
int input_list_folder(const char *dir, char ***paths);

/* Jobs (input, output) and the strings they point to. */
typedef struct joblist {
    pipe_job *jobs;
    int n, cap;
    int skipped; /* outputs already there, left out (input_folder_jobs without overwrite): they
                    follow the n jobs to run, in jobs[n .. n + skipped) */
    int shard, shards; /* set by the caller: keep only shard `shard` of `shards` (0: all) ... */
    int total;         /* ... of these photos (input_folder_jobs: all of them, every shard's) */
    char **strings;
    int nstrings, strings_cap;
} joblist;

/* Adds a job; the output string is the caller's. 0 or DL_ENOMEM. */
int joblist_add(joblist *l, const char *input, char *output);
void joblist_free(joblist *l);

/* The shard (0 .. shards - 1) a photo belongs to: a hash of its path relative to its input
 * folder (its file name: folders are not recursive), the same on every machine and in every
 * version, whatever the folder is called where each shard mounts it. FNV-1a (64 bits) of the
 * name's bytes, mixed by MurmurHash3's finaliser, modulo shards. */
int input_shard_of(const char *path, int shards);

/* The jobs of `cmd -o DIR INPUTS...`: every input file, and the photos of every input folder,
 * each to DIR/NAME.ext; with l->shards, only those of shard l->shard (every photo counts in
 * the checks below, so that all shards agree); outputs already there are skipped unless
 * overwrite. Returns 0, or the
 * exit status after reporting the problem (no photo at all, a folder that cannot be read,
 * standard input among them, clashing outputs). */
int input_folder_jobs(joblist *l, const char *cmd, const char *const *inputs, int ninputs, const char *dir,
                      const char *ext, int overwrite);

/* Removes what killed runs left in dir: the temporary files ".NAME.tmp-XXXXXXXXXX" (outfile.c)
 * of the outputs of l's jobs, those to run and those skipped, and of no other file (another
 * shard's may be in use). A run still writing one of them (the same photos at once) loses its
 * rename and reports the photo as failed; whichever run is left writes it. Returns how many. */
int input_remove_stale_temps(const joblist *l, const char *dir);

#endif
