/* Runs the fuzz target over files or directories of inputs, with any compiler (no libFuzzer):
 * CTest replays the seed corpus through it, and it reproduces a crash file from a fuzz run. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    static uint8_t buf[1u << 16];
    size_t n;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    int i, files = 0, errors = 0;
    for (i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            char path[4096];
            while (d != NULL && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') {
                    continue;
                }
                snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
                errors += run_file(path);
                files++;
            }
            if (d != NULL) {
                closedir(d);
            }
        } else {
            errors += run_file(argv[i]);
            files++;
        }
    }
    printf("replayed %d input(s)\n", files);
    return (errors != 0 || files == 0) ? 1 : 0;
}
