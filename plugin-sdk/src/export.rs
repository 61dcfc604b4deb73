//! [`export_plugin!`](crate::export_plugin): wiring an [`Aops`] type into the
//! component's exports.

/// Export a type implementing [`Aops`](crate::Aops) (and `Default`) as this
/// component's `aopsfs:vfs/aops` interface.
///
/// Invoke it once, at the top level of a `cdylib` crate:
///
/// ```ignore
/// #[derive(Default)]
/// struct MyFs;
/// impl aopsfs_plugin_sdk::Aops for MyFs {}
/// aopsfs_plugin_sdk::export_plugin!(MyFs);
/// ```
///
/// Each instance holds one value of the type: built with `Default` and
/// configured by [`Aops::mount`](crate::Aops::mount) when the host calls
/// `mount`, then lent to every later call. The SDK also applies its own
/// options (`log-level`) and checks once that the host's page size is the
/// contract's 4096.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            use $crate::bindings::exports::aopsfs::vfs::aops as __aops;

            ::std::thread_local! {
                static __AOPSFS_PLUGIN: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            fn __with<R>(f: impl FnOnce(&mut $plugin) -> R) -> R {
                __AOPSFS_PLUGIN.with(|cell| $crate::__private::with_plugin(cell, f))
            }

            struct __AopsfsExports;

            impl __aops::Guest for __AopsfsExports {
                fn mount(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<$crate::Features, ::std::string::String> {
                    __AOPSFS_PLUGIN.with(|cell| $crate::__private::mount(cell, config))
                }

                fn readpage(
                    inode: $crate::Inode,
                    page: &$crate::Page,
                    index: u64,
                ) -> $crate::AopResult {
                    $crate::__private::check_page(page);
                    __with(|p| $crate::Aops::readpage(p, inode, page, index))
                }

                fn writepage(
                    inode: $crate::Inode,
                    page: &$crate::Page,
                    index: u64,
                    wbc: $crate::WritebackControl,
                ) -> $crate::AopResult {
                    $crate::__private::check_page(page);
                    __with(|p| $crate::Aops::writepage(p, inode, page, index, wbc))
                }

                fn prepare_write(
                    inode: $crate::Inode,
                    page: &$crate::Page,
                    index: u64,
                    from: u32,
                    to: u32,
                ) -> $crate::AopResult {
                    $crate::__private::check_page(page);
                    __with(|p| $crate::Aops::prepare_write(p, inode, page, index, from, to))
                }

                fn commit_write(
                    inode: $crate::Inode,
                    page: &$crate::Page,
                    index: u64,
                    from: u32,
                    to: u32,
                ) -> $crate::AopResult {
                    $crate::__private::check_page(page);
                    __with(|p| $crate::Aops::commit_write(p, inode, page, index, from, to))
                }

                fn invalidatepage(
                    inode: $crate::Inode,
                    page: &$crate::Page,
                    index: u64,
                    offset: u32,
                ) {
                    __with(|p| $crate::Aops::invalidatepage(p, inode, page, index, offset))
                }

                fn releasepage(inode: $crate::Inode, page: &$crate::Page, index: u64) -> bool {
                    __with(|p| $crate::Aops::releasepage(p, inode, page, index))
                }

                fn truncate(inode: $crate::Inode) -> ::core::result::Result<(), $crate::Errno> {
                    __with(|p| $crate::Aops::truncate(p, inode))
                }
            }

    $crate::bindings::export!(__AopsfsExports with_types_in $crate::bindings);

            // readpages, lifted and lowered by hand (see `__private`).
            #[unsafe(export_name = "aopsfs:vfs/aops@0.1.0#readpages")]
            unsafe extern "C" fn __aopsfs_export_readpages(
                ino: i64,
                size: i64,
                base: *mut u8,
                len: usize,
            ) -> *mut u8 {
                unsafe {
                    $crate::__private::readpages_cabi(ino, size, base, len, |inode, pages| {
                        if let Some((page, _)) = pages.first() {
                            $crate::__private::check_page(page);
                        }
                        __with(|p| $crate::Aops::readpages(p, inode, pages))
                    })
                }
            }

            #[unsafe(export_name = "cabi_post_aopsfs:vfs/aops@0.1.0#readpages")]
            unsafe extern "C" fn __aopsfs_post_return_readpages(area: *mut u8) {
                unsafe { $crate::__private::readpages_post_return(area) }
            }
        };
    };
}

#[doc(hidden)]
pub mod __private {
    //! Support for `export_plugin!`; not a public API.

    use std::cell::{RefCell, UnsafeCell};

    use crate::{AopResult, Aops, Config, Features, Inode, Page};

    /// The `mount` export: build the plugin value, configure it, keep it.
    pub fn mount<T: Aops>(
        cell: &RefCell<Option<T>>,
        config: Vec<(String, String)>,
    ) -> Result<Features, String> {
        let config = Config::new(config);
        crate::log::configure(&config)?;
        let mut plugin = T::default();
        plugin.mount(&config)?;
        let features = plugin.features();
        *cell.borrow_mut() = Some(plugin);
        Ok(features)
    }

    /// Lend the plugin value to one call. Calls into an instance never
    /// overlap (no re-entrance in the component model), so the borrow
    /// cannot conflict.
    pub fn with_plugin<T: Aops, R>(cell: &RefCell<Option<T>>, f: impl FnOnce(&mut T) -> R) -> R {
        let mut slot = cell.borrow_mut();
        let plugin = slot.get_or_insert_with(|| {
            crate::warn!("an operation was called before mount; using the default configuration");
            T::default()
        });
        f(plugin)
    }

    /// Check once per instance that the host's page size is the SDK's.
    pub fn check_page(page: &Page) {
        crate::page::check_page_size(page);
    }

    /// The return area of `readpages`: the result list's pointer, then its
    /// length (canonical ABI: a `list` result is returned through memory).
    struct RetArea(UnsafeCell<[usize; 2]>);

    // SAFETY: a component instance runs one call at a time on one thread; the
    // area is written by an export and read by its post-return, never at once.
    unsafe impl Sync for RetArea {}

    static READPAGES_RET: RetArea = RetArea(UnsafeCell::new([0; 2]));

    /// The canonical-ABI body of the `readpages` export:
    /// `func(inode: inode, pages: list<tuple<borrow<page>, u64>>) ->
    /// list<aop-result>`.
    ///
    /// Lifts the inode (two i64) and the list of (borrowed page handle,
    /// index) tuples (16 bytes each, aligned to 8: the i32 handle at 0, the
    /// u64 index at 8, in memory the host allocated through `cabi_realloc`,
    /// which the callee frees), calls `f`, ends every borrow (`resource.drop`, which the
    /// component model requires before the export returns), and lowers the
    /// results (2 bytes each: case, errno) into a fresh allocation whose
    /// pointer and length go in the return area.
    ///
    /// # Safety
    ///
    /// Only for the generated export: `base`/`len` must be the list the host
    /// passed, holding borrow handles of `page`.
    pub unsafe fn readpages_cabi(
        ino: i64,
        size: i64,
        base: *mut u8,
        len: usize,
        f: impl FnOnce(Inode, &[(&Page, u64)]) -> Vec<AopResult>,
    ) -> *mut u8 {
        const ELEM: usize = 16;
        let (handles, indexes): (Vec<Page>, Vec<u64>) = (0..len)
            .map(|i| {
                // SAFETY: the host wrote `len` 16-byte (handle, index)
                // tuples at `base`, aligned to 8.
                unsafe {
                    let elem = base.add(i * ELEM);
                    (
                        Page::from_handle(*elem.cast::<i32>() as u32),
                        *elem.add(8).cast::<u64>(),
                    )
                }
            })
            .unzip();
        if len > 0 {
            // SAFETY: allocated by the host with this layout via cabi_realloc.
            unsafe {
                std::alloc::dealloc(
                    base,
                    std::alloc::Layout::from_size_align_unchecked(len * ELEM, 8),
                )
            };
        }
        let pages: Vec<(&Page, u64)> = handles.iter().zip(indexes).collect();
        let results = f(
            Inode {
                ino: ino as u64,
                size: size as u64,
            },
            &pages,
        );
        drop(pages);
        drop(handles);
        let mut bytes = Vec::with_capacity(results.len() * 2);
        for result in &results {
            bytes.extend_from_slice(&match result {
                AopResult::Ok => [0, 0],
                AopResult::Error(e) => [1, *e as u8],
                AopResult::TruncatedPage => [2, 0],
                AopResult::WritepageActivate => [3, 0],
            });
        }
        let list = Box::into_raw(bytes.into_boxed_slice());
        let area = READPAGES_RET.0.get();
        // SAFETY: see RetArea; the post-return reads it back.
        unsafe {
            (*area)[0] = list.cast::<u8>() as usize;
            (*area)[1] = results.len();
        }
        area.cast()
    }

    /// The post-return of `readpages`: free the result list.
    ///
    /// # Safety
    ///
    /// Only with the area `readpages_cabi` returned, once.
    pub unsafe fn readpages_post_return(area: *mut u8) {
        // SAFETY: written by readpages_cabi just before.
        unsafe {
            let [ptr, len] = *area.cast::<[usize; 2]>();
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                ptr as *mut u8,
                len * 2,
            )));
        }
    }
}
