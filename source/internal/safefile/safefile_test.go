package safefile

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRead(t *testing.T) {
	const limit = 1 << 10
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
	big := write("big", strings.Repeat("x", limit+1))

	t.Run("readable", func(t *testing.T) {
		tests := []struct {
			name string
			give string
			want string
		}{
			{name: "regular file", give: cert, want: pem},
			{name: "symlink to a regular file", give: link, want: pem},
			{name: "empty file", give: write("empty", ""), want: ""},
			{name: "at the limit", give: write("limit", strings.Repeat("x", limit)), want: strings.Repeat("x", limit)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				data, err := Read(tt.give, limit)
				require.NoError(t, err)
				assert.Equal(t, tt.want, string(data))
				assert.NoError(t, Check(tt.give))
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
			{name: "past the limit", give: big, wantErr: big + " is larger than 1024 bytes", checkFile: true},
			{name: "directory", give: dir, wantErr: dir + " is not a regular file"},
			{name: "missing", give: missing, wantErr: "stat " + missing + ": no such file or directory"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				data, err := Read(tt.give, limit)
				assert.EqualError(t, err, tt.wantErr)
				assert.Nil(t, data)
				assert.Equal(t, tt.checkFile, Check(tt.give) == nil)
			})
		}
		_, err := Read(missing, limit)
		assert.ErrorIs(t, err, fs.ErrNotExist, "callers can tell a missing file")
		_, err = Read(big, limit)
		var tooBig *TooBigError
		require.ErrorAs(t, err, &tooBig, "callers can tell a file too big")
		assert.Equal(t, TooBigError{Path: big, Limit: limit}, *tooBig)
	})
}
