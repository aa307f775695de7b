package kcfg

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
)

// maxFileSize bounds a file that ReadSmallFile reads: certificates and keys
// are a few kilobytes.
const maxFileSize = 1 << 20

// ReadSmallFile reads the regular file at path, of at most 1 MiB, such as a
// certificate or a key that a kubeconfig refers to. A path that names
// anything else (a named pipe, a device, a socket, a directory) is an error,
// and neither opening nor reading it blocks. Errors name the path and the
// cause, never the content.
func ReadSmallFile(path string) ([]byte, error) {
	fh, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// CheckFile checks, without reading it, that path is a regular file that can
// be opened for reading, so that client-go's own reads of it (a token file)
// end. Like ReadSmallFile, it never blocks on a named pipe or a device.
func CheckFile(path string) error {
	fh, err := openRegular(path)
	if err != nil {
		return err
	}
	return fh.Close()
}

// openRegular opens the regular file at path for reading. It checks the
// path before opening it, so that nothing else is opened at all while the
// path stays put; its open does not wait for a named pipe's writer
// (openNonblock), in case the path was replaced in between; and it checks
// the file it opened.
func openRegular(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path)
	}
	fh, err := openNonblock(path)
	if err != nil {
		return nil, err
	}
	if fi, err = fh.Stat(); err == nil && !fi.Mode().IsRegular() {
		err = notRegular(path)
	}
	if err == nil {
		err = setBlocking(fh)
	}
	if err != nil {
		fh.Close()
		return nil, err
	}
	return fh, nil
}

func notRegular(path string) error { return fmt.Errorf("%s is not a regular file", path) }

// ParseProxyURL parses a cluster's proxy URL, which must be an http, https or
// socks5 URL, as client-go requires. Its error does not quote the URL, which
// may carry a user and password.
func ParseProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") {
		return nil, errProxyURL
	}
	return u, nil
}

var errProxyURL = errors.New("must be an http, https or socks5 URL")
