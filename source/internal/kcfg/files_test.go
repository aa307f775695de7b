package kcfg

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadSmallFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}
	const pem = "-----BEGIN CERTIFICATE-----\n"
	cert := write("ca.crt", pem)
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(cert, link))
	big := write("big", strings.Repeat("x", maxFileSize+1))

	t.Run("readable", func(t *testing.T) {
		tests := []struct {
			name string
			give string
			want string
		}{
			{name: "regular file", give: cert, want: pem},
			{name: "symlink to a regular file", give: link, want: pem},
			{name: "empty file", give: write("empty", ""), want: ""},
			{name: "at the limit", give: write("limit", strings.Repeat("x", maxFileSize)), want: strings.Repeat("x", maxFileSize)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				data, err := ReadSmallFile(tt.give)
				require.NoError(t, err)
				assert.Equal(t, tt.want, string(data))
				assert.NoError(t, CheckFile(tt.give))
			})
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		missing := filepath.Join(dir, "missing")
		tests := []struct {
			name      string
			give      string
			wantErr   string
			checkFile bool // whether CheckFile accepts it
		}{
			{name: "past the limit", give: big, wantErr: big + " is larger than 1048576 bytes", checkFile: true},
			{name: "directory", give: dir, wantErr: dir + " is not a regular file"},
			{name: "missing", give: missing, wantErr: "stat " + missing + ": no such file or directory"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				data, err := ReadSmallFile(tt.give)
				assert.EqualError(t, err, tt.wantErr)
				assert.Nil(t, data)
				assert.Equal(t, tt.checkFile, CheckFile(tt.give) == nil)
			})
		}
		_, err := ReadSmallFile(missing)
		assert.ErrorIs(t, err, fs.ErrNotExist, "callers can tell a missing file")
	})
}

func TestParseProxyURL(t *testing.T) {
	for _, give := range []string{"http://proxy:3128", "https://u:p4ss@proxy", "socks5://proxy:1080"} {
		u, err := ParseProxyURL(give)
		require.NoError(t, err, give)
		assert.Equal(t, give, u.String())
	}
	for _, give := range []string{"ftp://proxy", "proxy:3128", "http://u:s3cr3t@proxy:bad-port", "://"} {
		_, err := ParseProxyURL(give)
		assert.EqualError(t, err, "must be an http, https or socks5 URL", give)
	}
}
