// MathJax 3, served from this site (no CDN). Notebook markdown uses $...$ and $$...$$; the Markdown pages
// use pymdownx.arithmatex, which writes \(...\) and \[...\]. Code (pre/code) is never typeset.
window.MathJax = {
  tex: {
    inlineMath: [['$', '$'], ['\\(', '\\)']],
    displayMath: [['$$', '$$'], ['\\[', '\\]']],
    processEscapes: true,
    processEnvironments: true
  },
  svg: {fontCache: 'global'}
};
