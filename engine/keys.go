package engine

import "encoding/binary"

// Table tags: the first byte of every key (see the layout in doc.go).
const (
	tagNextVolumeID byte = 0x01
	tagVolume       byte = 0x02
	tagHead         byte = 0x03
	tagCommit       byte = 0x04
	tagPage         byte = 0x05
	tagSpill        byte = 0x06
	tagPruned       byte = 0x07
	// 0x08 is tagRepl (push.go).
	// 0x0A is tagLocation (budget.go).
	tagCommitLog byte = 0x09
)

// VolumeID identifies a volume inside one data directory.
type VolumeID uint64

var nextVolumeIDKey = []byte{tagNextVolumeID, 'n', 'e', 'x', 't', '-', 'v', 'o', 'l', 'u', 'm', 'e', '-', 'i', 'd'}

// commitLogKey holds the commit log position record (see package commitlog).
var commitLogKey = []byte{tagCommitLog, 'c', 'o', 'm', 'm', 'i', 't', '-', 'l', 'o', 'g'}

func volumeKey(name string) []byte {
	return append([]byte{tagVolume}, name...)
}

func idKey(tag byte, id VolumeID) []byte {
	k := make([]byte, 9)
	k[0] = tag
	binary.BigEndian.PutUint64(k[1:], uint64(id))
	return k
}

func headKey(id VolumeID) []byte   { return idKey(tagHead, id) }
func spillKey(id VolumeID) []byte  { return idKey(tagSpill, id) }
func prunedKey(id VolumeID) []byte { return idKey(tagPruned, id) }

func commitKey(id VolumeID, v Version) []byte {
	k := make([]byte, 17)
	k[0] = tagCommit
	binary.BigEndian.PutUint64(k[1:], uint64(id))
	binary.BigEndian.PutUint64(k[9:], uint64(v))
	return k
}

const pageKeyLen = 21

// pageKey is the key of page p's image written at version v.
func pageKey(id VolumeID, p PageNo, v Version) []byte {
	return appendPageKey(make([]byte, 0, pageKeyLen), id, p, v)
}

func appendPageKey(k []byte, id VolumeID, p PageNo, v Version) []byte {
	k = append(k, tagPage)
	k = binary.BigEndian.AppendUint64(k, uint64(id))
	k = binary.BigEndian.AppendUint32(k, uint32(p))
	return binary.BigEndian.AppendUint64(k, ^uint64(v))
}

// pagePrefixEnd is the first key after every image of page p: a key upper
// bound for iterating p's images, and the exclusive end of range deletes.
func pagePrefixEnd(id VolumeID, p PageNo) []byte {
	k := appendPageKey(make([]byte, 0, pageKeyLen+1), id, p, 0) // ^0 = all ones: the oldest image
	return append(k, 0)
}

// decodePageKey splits a page key; ok is false for any other key.
func decodePageKey(k []byte) (id VolumeID, p PageNo, v Version, ok bool) {
	if len(k) != pageKeyLen || k[0] != tagPage {
		return 0, 0, 0, false
	}
	return VolumeID(binary.BigEndian.Uint64(k[1:9])), PageNo(binary.BigEndian.Uint32(k[9:13])),
		Version(^binary.BigEndian.Uint64(k[13:21])), true
}

// volumePagesStart and volumePagesEnd bound every page key of volume id.
func volumePagesStart(id VolumeID) []byte { return idKey(tagPage, id) }
func volumePagesEnd(id VolumeID) []byte   { return idKey(tagPage, id+1) }
